"""Plain JSON in and out: one `json_safe` for every report, card and fitted model the project writes,
one `load_json` for every fitted model it reads back.

Fitted models (calibrators, stackers, colour models) are saved as json, never pickles, because
these files travel with configs and a miner must never unpickle a file it was handed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """Strict-JSON types, recursively: numpy scalars and arrays unwrapped, nan/inf as None,
    tuples as lists, keys as strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write `obj` (made json-safe) to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(obj), indent=indent) + "\n")
    return path


def load_json(path: str | Path, what: str) -> Any:
    """The JSON document at `path`. A missing file is FileNotFoundError("<what> not found: PATH"),
    a file that is not JSON a ValueError naming it (both one line for the CLI)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
