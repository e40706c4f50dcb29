"""The hard-negative probe set: the night and dusk frames among the shared negatives (issue 10 item 5).

The shipped model's worst mistakes are dark streets with red tail and brake lights, traffic lights
and lit shop signs. These groups of `../shared/data` are exactly that, chosen by looking at every
negative frame sorted by brightness (the rest of the dark end is shaded daylight, not night):

    camvid:0001TP                    124 frames, Cambridge at dusk: tail lights, green/red traffic lights,
                                     red shop fronts, a double-decker bus, hi-vis cyclists
    us_dashcam_kartikey:dashcam.mp4  14 frames, US motorway at sunset into night: brake lights,
                                     street lamps, a lit overpass

The ablation keeps these frames (and synthetic images painted on them) out of every training run
and reports the share of them each recipe calls roadwork: the false-positive rate. The set is
fixed by group so it is the same in every run and every session.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

PROBE_GROUPS: tuple[str, ...] = ("camvid:0001TP", "us_dashcam_kartikey:dashcam.mp4")


def is_probe(record: Any, groups: Sequence[str] = PROBE_GROUPS) -> bool:
    return int(record.label) == 0 and str(record.group) in groups


def split_probe(records: Sequence[Any], groups: Sequence[str] = PROBE_GROUPS) -> tuple[list[Any], list[Any]]:
    """(records to train and test on, the probe frames)."""
    rest, probe = [], []
    for r in records:
        (probe if is_probe(r, groups) else rest).append(r)
    return rest, probe


def _tail_matches(scene: str, probe_paths: set[tuple[str, ...]]) -> bool:
    """A synth manifest's scene path is relative to its scene data's root, ours may have any root."""
    sp = Path(scene).parts
    return bool(sp) and any(parts[-len(sp):] == sp for parts in probe_paths if len(parts) >= len(sp))


def write_inputs(records: Sequence[Any], synth_sets: dict[str, str], out: str | Path,
                 groups: Sequence[str] = PROBE_GROUPS) -> tuple[str, str, dict[str, str], dict[str, int]]:
    """Manifests with absolute paths for the ablation: the data without the probe frames, the probe
    frames, and each synthetic set without the images painted on a probe frame (matched by group
    and by scene path). Returns (data.csv, probe.csv, {set: synth.csv}, counts)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rest, probe = split_probe(records, groups)
    if not probe:
        raise ValueError(f"no probe frames (groups {', '.join(groups)}) in the data: is it ../shared/data?")
    cols = ["path", "label", "source", "group"]
    for name, rows in (("data", rest), ("probe", probe)):
        with (out / f"{name}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows([str(Path(r.path).absolute()), int(r.label), r.source, r.group] for r in rows)
    probe_paths = {Path(r.path).absolute().parts for r in probe}
    synth_out, counts = {}, {"data": len(rest), "probe": len(probe)}
    for name, spec in synth_sets.items():
        src = Path(spec)
        src = src if src.suffix.lower() == ".csv" else src / "manifest.csv"
        with src.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            kept, dropped = [], 0
            for row in reader:
                if row.get("group") in groups or _tail_matches(row.get("scene_path", ""), probe_paths):
                    dropped += 1
                    continue
                row["path"] = str((src.parent / row["path"]).absolute())
                if row.get("mask"):
                    row["mask"] = str((src.parent / row["mask"]).absolute())
                kept.append(row)
        dst = out / f"synth-{name}.csv"
        with dst.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(kept)
        synth_out[name] = str(dst)
        counts[f"synth-{name}"], counts[f"synth-{name}-dropped"] = len(kept), dropped
    return str(out / "data.csv"), str(out / "probe.csv"), synth_out, counts
