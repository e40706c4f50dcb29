"""A model reference (`--model`, `--init`, a tier's `model:`) checked before transformers loads it.

transformers answers a mistyped folder with a 200-line traceback, and a hub id with no network after a
minute of retries. Here a reference is either an existing `save_pretrained` folder, or a hub id that is
in the local cache or on a hub that answers within `HUB_TIMEOUT_S`; anything else is a `ModelError`
whose one line says what is wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path

HUB_TIMEOUT_S = 5.0  # one metadata request; a reachable hub answers in well under a second


class ModelError(ValueError):
    """A model reference that cannot be loaded; the message names it and says what to do."""


def _looks_like_path(ref: str) -> bool:
    # hub ids are "name" or "namespace/name"; anything else with a separator is meant as a folder
    return ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1


def _cached_snapshot(repo_id: str) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not usable from the cache"
        return None


def resolve_model(ref: str, what: str = "model") -> str:
    """`ref` as transformers should load it: the folder, the hub id, or the cached snapshot of a hub id
    when the hub cannot be asked. Raises ModelError (one line) for everything else."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{what} {ref}: not a model folder (no config.json); give a save_pretrained folder "
                             "such as models/default, or a hub id")
        return str(path)
    if path.exists():
        raise ModelError(f"{what} {ref}: a file, not a model folder; give its folder (config.json + weights)")
    if _looks_like_path(ref):
        raise ModelError(f"{what} {ref}: no such model folder")

    from huggingface_hub import is_offline_mode, model_info
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(ref)
    except HFValidationError:
        raise ModelError(f"{what} {ref!r}: neither a folder nor a hub id (namespace/name)") from None
    cached = _cached_snapshot(ref)
    if is_offline_mode():
        if cached:
            return cached
        raise ModelError(f"{what} {ref}: no such folder, and the hub is offline (HF_HUB_OFFLINE is set) with no "
                         "cached copy; give a local model folder, or download it while online")
    try:
        model_info(ref, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelError(f"{what} {ref}: a gated model on the Hugging Face Hub; accept its terms on the hub "
                         "and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{what} {ref}: no such folder, and no such model on the Hugging Face Hub (or it is "
                         "private: `hf auth login`)") from None
    except Exception as e:  # noqa: BLE001 - DNS, refused, timeout, proxy, 5xx: the hub cannot be asked
        if cached:
            return cached
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ModelError(f"{what} {ref}: no such folder, and the Hugging Face Hub is unreachable ({reason}); "
                         "give a local model folder, or set HF_HUB_OFFLINE=1 to use a cached copy") from None
    return ref


__all__ = ["HUB_TIMEOUT_S", "ModelError", "resolve_model"]
