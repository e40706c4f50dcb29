"""Write a reproducible challenge set: the JPEG files exactly as the validator would send them, plus labels.

    OUT/000000.jpg ...      the wire bytes (base64-decode of the synapse's `image`): 224x224 for 2026-01
                            and 2026-04, the native size for 2026-05
    OUT/labels.csv          file,label,source,group,level,distortions,angle,crop,origin,protocol
    OUT/manifest.csv        path,label,group,source,level (so `open_source(OUT)` reads the set back)

`level` is empty for 2026-05 (no augmentation levels).
`distortions` lists the active ones as code+strength joined by '+' (e.g. "CS1+JPEG2", "" for none);
`crop` is top-left-height-width on the rotated full image; both angle and crop are empty at level 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from roadwork.challenge.sim import Challenge, make_challenge

LABEL_COLUMNS = ("file", "label", "source", "group", "level", "distortions", "angle", "crop", "origin", "protocol")


def format_distortions(strengths: dict[str, int]) -> str:
    return "+".join(f"{code}{s}" for code, s in strengths.items() if s)


def parse_distortions(text: str) -> dict[str, int]:
    """Inverse of `format_distortions` for the active codes ("CS1+GB2" -> {"CS": 1, "GB": 2})."""
    out: dict[str, int] = {}
    for part in filter(None, text.split("+")):
        code, strength = part.rstrip("0123456789"), part[len(part.rstrip("0123456789")):]
        if not code or not strength:
            raise ValueError(f"bad distortion entry {part!r} in {text!r} (expected e.g. 'CS1')")
        out[code] = int(strength)
    return out


def _row(name: str, ch: Challenge, rec) -> dict[str, object]:
    return {"file": name, "label": rec.label, "source": rec.source, "group": rec.group,
            "level": "" if ch.level is None else ch.level, "protocol": ch.protocol,
            "distortions": format_distortions(ch.distortions),
            "angle": "" if ch.angle is None else f"{ch.angle:.6f}",
            "crop": "" if ch.crop is None else "-".join(map(str, ch.crop)), "origin": rec.path}


def make_challenge_set(data: str | Path, out: str | Path, seed: int, n: int | None = None,
                       progress: bool = True, console=None,
                       protocol: str | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Write challenges for `data` (anything `roadwork.data.open_source` reads) into `out`.

    With `n`, a seeded random subset of n images (kept in source order); otherwise every image. The
    subset and the challenges use separate streams spawned from `seed`, so the same seed and data give
    byte-identical files. `protocol`: the validator version (default `protocols.DEFAULT_PROTOCOL`).
    Returns (images written, [(path, reason) of unreadable images skipped]).
    """
    from roadwork.challenge.protocols import get_protocol, is_jpeg_path
    from roadwork.data import open_source
    from roadwork.decode import ImageError

    protocol = get_protocol(protocol).name
    src = open_source(data)
    records = src.records()
    pick_rng, challenge_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n is not None:
        if n <= 0:
            raise ValueError(f"--n must be positive, got {n}")
        if n < len(records):
            keep = np.sort(pick_rng.choice(len(records), size=n, replace=False))
            records = [records[i] for i in keep]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    with _progress(progress, console) as bar:
        task = bar.add_task("challenges", total=len(records))
        for rec in records:
            try:
                img = rec.load()
            except ImageError as e:
                src.report(rec.path, e.reason)
                bar.advance(task)
                continue
            ch = make_challenge(img, challenge_rng, protocol=protocol, from_jpeg=is_jpeg_path(rec.path))
            name = f"{len(rows):06d}.jpg"
            (out / name).write_bytes(ch.jpeg)
            rows.append(_row(name, ch, rec))
            bar.advance(task)
    _write_csv(out / "labels.csv", LABEL_COLUMNS, rows)
    _write_csv(out / "manifest.csv", ("path", "label", "group", "source", "level"),
               [{"path": r["file"], **{k: r[k] for k in ("label", "group", "source", "level")}} for r in rows])
    return len(rows), list(src.errors)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _progress(enabled: bool, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=False)


def make_main(data: str, out: str | Path, seed: int, n: int | None, console, protocol: str | None = None) -> int:
    """`roadwork challenge make`: 0 on success (unreadable images are listed and skipped), 2 on bad data."""
    from roadwork.challenge.protocols import get_protocol
    from roadwork.data import DataError

    try:
        written, skipped = make_challenge_set(data, out, seed, n, progress=True, console=console, protocol=protocol)
    except (DataError, ValueError) as e:
        console.print(f"[red]{e}[/red]", soft_wrap=True)
        return 2
    for path, reason in skipped:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
    console.print(f"wrote {written} challenges to {out} (labels.csv, manifest.csv; seed {seed}, protocol "
                  f"{protocol or get_protocol().name})", soft_wrap=True)
    return 0
