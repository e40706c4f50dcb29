"""A loopback HTTP server speaking the few Hub API routes `huggingface_hub` uses to publish a model.

Routes (as huggingface_hub 2.x sends them; see hf_api.create_repo/create_branch/_validate_yaml,
_commit_api._fetch_upload_modes/_send_commit, lfs.post_lfs_batch_info/_upload_single_part):

    POST /api/repos/create                          {"name", "organization", "visibility"?}
    POST /api/validate-yaml                         {"content", "repoType"}
    POST /api/models/{owner}/{name}/branch/{b}      create a branch
    POST /api/models/{owner}/{name}/preupload/{rev} {"files": [{"path", "sample" (base64), "size"}]}
    POST /{owner}/{name}.git/info/lfs/objects/batch LFS basic transfer: where to PUT each object
    PUT  /lfs/{oid}                                 the LFS object's bytes
    POST /api/models/{owner}/{name}/commit/{rev}    ndjson: header, file (base64), lfsFile (oid)

Like the Hub, binary or large files are asked for through LFS (the client must then have xet off:
xet's CAS protocol is not implemented here). Everything received is kept in `FakeHub.requests`
and the committed files in `FakeHub.commits`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub's threshold for text files


@dataclass
class FakeHub:
    url: str = ""
    token: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    branches: set[tuple[str, str]] = field(default_factory=set)
    lfs: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _reply(self, code: int, body: Any = None) -> None:
            data = json.dumps(body if body is not None else {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _record(self, body: bytes) -> tuple[str, dict[str, list[str]]]:
            u = urlparse(self.path)
            hub.requests.append({"method": self.command, "path": u.path, "query": parse_qs(u.query),
                                 "auth": self.headers.get("Authorization"), "body": body})
            return u.path, parse_qs(u.query)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return False
            return True

        def do_PUT(self) -> None:  # noqa: N802 - http.server naming
            body = self._body()
            path, _ = self._record(body)
            m = re.fullmatch(r"/lfs/([0-9a-f]{64})", path)
            if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                return self._reply(400, {"error": "bad LFS object"})
            hub.lfs[m.group(1)] = body
            self._reply(200)

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            path, query = self._record(body)
            if not self._authorized():
                return
            if path == "/api/repos/create":
                req = json.loads(body)
                repo = f"{req['organization']}/{req['name']}"
                if repo in hub.repos:
                    # the Hub names the existing repo's url in its 409 too (create_repo(exist_ok=True) reads it)
                    return self._reply(409, {"error": "You already created this model repo",
                                             "url": f"{hub.url}/{repo}"})
                hub.repos[repo] = req
                return self._reply(200, {"url": f"{hub.url}/{repo}"})
            if path == "/api/validate-yaml":
                return self._reply(200, {"errors": [], "warnings": []})
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(branch|preupload|commit)/(.+)", path)
            if m:
                repo, verb, rev = m.groups()
                if repo not in hub.repos:
                    return self._reply(404, {"error": "Repository not found"})
                if verb == "branch":
                    hub.branches.add((repo, rev))
                    return self._reply(200)
                if verb == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "shouldIgnore": False, "oid": None,
                         "uploadMode": "lfs" if (b"\0" in base64.b64decode(f["sample"]) or f["size"] >= LFS_MIN_SIZE)
                         else "regular"} for f in files]})
                return self._commit(repo, rev, body, query)
            m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
            if m:
                objects = json.loads(body)["objects"]
                return self._reply(200, {"transfer": "basic", "objects": [
                    {"oid": o["oid"], "size": o["size"], "authenticated": True,
                     "actions": {"upload": {"href": f"{hub.url}/lfs/{o['oid']}"}}} for o in objects]})
            self._reply(404, {"error": f"no route {path}"})

        def _commit(self, repo: str, rev: str, body: bytes, query: dict[str, list[str]]) -> None:
            if rev != "main" and (repo, rev) not in hub.branches:
                return self._reply(404, {"error": f"Invalid rev id: {rev}"})
            files: dict[str, bytes] = {}
            header: dict[str, Any] = {}
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    header = item["value"]
                elif item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "lfsFile":
                    oid = item["value"]["oid"]
                    if oid not in hub.lfs:
                        return self._reply(400, {"error": f"LFS object {oid} was never uploaded"})
                    files[item["value"]["path"]] = hub.lfs[oid]
            pr = query.get("create_pr") == ["1"]
            n = len(hub.commits) + 1
            hub.commits.append({"repo": repo, "revision": rev, "create_pr": pr, "header": header, "files": files})
            self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{n:040x}", "commitOid": f"{n:040x}",
                              "pullRequestUrl": f"{hub.url}/{repo}/discussions/{n}" if pr else None})

    return Handler


def start_fake_hub(token: str) -> tuple[FakeHub, Any]:
    """Serve a FakeHub on a free loopback port in a thread; returns (hub, stop)."""
    hub = FakeHub(token=token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return hub, stop
