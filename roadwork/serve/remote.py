"""The miner's engine when it runs in another process: a `roadwork serve` reached over HTTP.

`roadwork mine --engine-url http://host:8000` forwards the validator's base64 image as it came
(`POST /v1/predict`) and answers what the server says. One GPU box then serves several hotkeys, and the
miner process imports neither torch nor the engine (only httpx), so its bittensor pins never meet
torch's. Every failure becomes an exception the miner turns into its fallback answer in time: a
refused or dropped connection is `EngineUnavailable`, a server slower than the request's deadline is
`DeadlineExceeded`, an image the server cannot decode is `ImageError`. Nothing is cached or retried
here: the next request simply tries again, so the miner recovers as soon as the server is back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from roadwork.decode import ImageError
from roadwork.serve.answers import DeadlineExceeded

API_KEY_HEADER = "X-API-Key"  # as roadwork.serve.http names it (not imported: that module needs fastapi)


class EngineUnavailable(RuntimeError):
    """The engine server refused, dropped or failed the request."""


@dataclass
class RemoteAnswer:
    prob: float
    tier: str
    timed_out: bool


class RemoteEngine:
    def __init__(self, url: str, api_key: str | None = None):
        self.url = url.rstrip("/")
        self.headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        # An AsyncClient's connection pool belongs to the loop it first ran on: one per loop.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(base_url=self.url, headers=self.headers)
        return client

    async def predict_base64(self, image: str, deadline: float, source: str = "synapse.image") -> RemoteAnswer:
        """The server's answer for one base64 image, or an exception before `deadline` (monotonic)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("no time left to ask the engine server")
        try:
            resp = await self._client().post("/v1/predict", json={"images": [image]}, timeout=left)
        except httpx.TimeoutException:
            raise DeadlineExceeded(f"the engine server at {self.url} did not answer in {left:.1f} s") from None
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"engine server {self.url} unreachable ({type(e).__name__})") from None
        if resp.status_code == 422:
            errors = _json(resp).get("errors") or [{}]
            raise ImageError(source, str(errors[0].get("reason") or _json(resp).get("detail") or resp.text[:200]))
        if resp.status_code == 504:
            raise DeadlineExceeded(f"the engine server at {self.url} ran out of time")
        if resp.status_code != 200:
            raise EngineUnavailable(f"engine server {self.url} answered {resp.status_code}: "
                                    f"{str(_json(resp).get('detail') or resp.text)[:200]}")
        try:
            r = resp.json()["results"][0]
            return RemoteAnswer(prob=float(r["prob"]), tier=str(r["tier"]), timed_out=bool(r["timed_out"]))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise EngineUnavailable(f"engine server {self.url} sent an unexpected answer ({e!r})") from None

    def ready(self, timeout: float = 2.0) -> str:
        """'ready', or why not (for the start-up log line and `roadwork doctor`); blocking."""
        try:
            resp = httpx.get(f"{self.url}/readyz", headers=self.headers, timeout=timeout)
        except httpx.HTTPError as e:
            return f"unreachable ({type(e).__name__})"
        return "ready" if resp.status_code == 200 else str(_json(resp).get("status") or resp.status_code)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _json(resp: httpx.Response) -> dict:
    try:
        out = resp.json()
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
