"""`roadwork publish DIR --repo OWNER/NAME`: check a model folder, stage it with its cards, upload it.

    validate: transformers.pipeline("image-classification") loads DIR (as the subnet's base miner
              does) and answers the example images with None/Roadwork scores in [0, 1]
    stage:    the folder's files (no checkpoints) + README.md (Hub card with YAML front matter, from
              publish.hub_card) + model_card.json (the subnet's format, validated) + LICENSE.md
              into OUT (default runs/publish/OWNER--NAME); DIR itself is left untouched
    upload:   huggingface_hub's create_repo + upload_folder (token from HF_TOKEN or `hf auth login`,
              endpoint from HF_ENDPOINT); --private, --revision (a branch, created if missing),
              --create-pr (against main). --dry-run stops after staging and prints what would be sent.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from roadwork import publish

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Never published: training state and partial writes.
SKIP_SUFFIXES = {".pt", ".tmp", ".lock"}
DEFAULT_OUT = Path("runs/publish")


class PublishError(ValueError):
    """Why a folder cannot be published, in one line."""


@dataclass
class Staged:
    folder: Path
    files: list[tuple[str, int]]  # (path in repo, bytes)
    card: dict[str, Any]
    answers: dict[str, float]  # example image -> P(roadwork) from the pipeline


def validate(folder: Path, examples: Sequence[Path]) -> dict[str, float]:
    """Load `folder` with the base miner's pipeline and answer every example; P(roadwork) per image."""
    if not (folder / "config.json").is_file():
        raise PublishError(f"{folder}: no config.json (not a save_pretrained model folder)")
    if not examples:
        raise PublishError("no example images to validate with (give --examples DIR)")
    from PIL import Image
    from transformers import pipeline

    try:
        clf = pipeline("image-classification", model=str(folder), device="cpu")
    except (OSError, ValueError, KeyError) as e:
        raise PublishError(f"{folder}: pipeline('image-classification') cannot load it ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    answers: dict[str, float] = {}
    for path in examples:
        out = clf(Image.open(path).convert("RGB"), top_k=None)
        scores = {d["label"]: float(d["score"]) for d in out}
        if set(scores) != {"None", "Roadwork"}:
            raise PublishError(f"{folder}: labels are {sorted(scores)}, the subnet expects None and Roadwork")
        p = scores["Roadwork"]
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise PublishError(f"{folder}: answered {p!r} for {path.name}, not a probability")
        answers[path.name] = p
    return answers


def example_images(spec: Path | None) -> list[Path]:
    root = spec or EXAMPLES
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


def stage(folder: Path, repo_id: str, out: Path, version: str | None = None, hotkey: str = "",
          model_name: str | None = None, description: str | None = None,
          examples: Sequence[Path] = ()) -> Staged:
    """Validate `folder` and write the upload into `out` (replaced if it exists)."""
    if not REPO_ID_RE.match(repo_id):
        raise PublishError(f"--repo {repo_id!r}: expected OWNER/NAME")
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder")
    if hotkey and not publish.is_ss58(hotkey):
        raise PublishError(f"--hotkey {hotkey!r}: not an SS58 address (the hotkey's public address, 5...)")
    answers = validate(folder, list(examples))
    old = publish._read_json(folder / "model_card.json")
    card = publish.model_card(model_name or repo_id, description or old.get("description") or
                              f"Roadwork image classifier for SN72 ({repo_id}).",
                              version or old.get("version", "0.1.0"), hotkey)
    publish.validate_card(card)
    if out.resolve() == folder.resolve():
        raise PublishError(f"--out {out}: must differ from the model folder")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix not in SKIP_SUFFIXES:
            shutil.copy2(f, out / f.name)
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    publish.hub_card(folder, repo_id).save(out / "README.md")
    (out / publish.LICENSE_FILE).write_text(publish.license_text(folder))
    files = [(p.name, p.stat().st_size) for p in sorted(out.iterdir()) if p.is_file()]
    return Staged(out, files, card, answers)


def upload(staged: Path, repo_id: str, private: bool = False, revision: str | None = None,
           create_pr: bool = False, message: str | None = None, token: str | None = None) -> str:
    """Upload the staged folder; returns the commit (or pull request) URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main" and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, repo_type="model", revision=revision,
                                 create_pr=create_pr, commit_message=message or f"roadwork publish {staged.name}")
    except (HfHubHTTPError, ValueError) as e:
        raise PublishError(f"upload to {repo_id}: {str(e).splitlines()[0]}") from None
    return str(info.pr_url or info.commit_url)


def publish_main(folder: Path, repo_id: str, out: Path | None, dry_run: bool, private: bool, revision: str | None,
                 create_pr: bool, hotkey: str | None, version: str | None, model_name: str | None,
                 description: str | None, examples: Path | None, message: str | None, console: Any) -> int:
    out = out or DEFAULT_OUT / repo_id.replace("/", "--")
    if create_pr and revision and revision != "main":
        # huggingface_hub opens upload_folder's pull requests against the default branch only
        console.print("[red]--create-pr opens a pull request against main; give either it or --revision[/red]")
        return 2
    try:
        st = stage(folder, repo_id, out, version, hotkey or "", model_name, description, example_images(examples))
    except (PublishError, publish.CardError) as e:
        console.print(f"[red]{e}[/red]")
        return 2
    shown = ", ".join(f"{k} {v:.3f}" for k, v in st.answers.items())
    console.print(f"validated: pipeline('image-classification') loads {folder}; P(roadwork): {shown}")
    from huggingface_hub import constants

    where = f"{constants.ENDPOINT}/{repo_id}" + (f" (revision {revision})" if revision else "") \
        + (" as a pull request" if create_pr else "") + (" private" if private else "")
    total = sum(n for _, n in st.files)
    console.print(f"{'would upload' if dry_run else 'uploading'} {len(st.files)} files "
                  f"({total / 1e6:.1f} MB) from {st.folder} to {where}:")
    for name, n in st.files:
        console.print(f"  {name:28s} {n:>12,d} bytes")
    console.print("model_card.json: " + json.dumps(st.card))
    if dry_run:
        return 0
    try:
        url = upload(st.folder, repo_id, private, revision, create_pr, message)
    except PublishError as e:
        console.print(f"[red]{e}[/red]")
        return 1
    console.print(f"uploaded: {url}")
    return 0
