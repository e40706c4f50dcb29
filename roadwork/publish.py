"""Model cards for a trained folder: `model_card.json` in the subnet's format and a README.md.

The subnet (docs, SN72.md) expects `{"model_name", "description", "version": "X.Y.Z", "submitted_by":
<miner hotkey ss58>, "submission_time": <unix seconds>}`. The README says what the model is, what it
was trained on and under which licenses, how well it does (with the command that measured each
number), how fast it runs on CPU, and the exact training command.

    python -m roadwork.publish DIR [--measure-speed] [--hotkey SS58] [--version X.Y.Z]
        [--eval-json eval.json --eval-name NAME --eval-command "roadwork eval ..."]
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path
from typing import Any

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
CARD_KEYS = ("model_name", "description", "version", "submitted_by", "submission_time")

# From ../shared/data/README.md: what a model trained on those sources must tell its users.
DATA_NOTICE = (
    "The training images are research datasets, mostly under non-commercial terms: ROADWork (CMU) "
    "ODC-By 1.0, KITTI CC BY-NC-SA 3.0, CamVid and the Dashcam Accident Dataset for research use, "
    "IDD-lite (India Driving Dataset) under its research terms, and several short demo clips with no "
    "stated license. Treat this model as a research artifact: check these terms before any commercial use.")
OBJECTS_NOTICE = (
    "Synthetic positives were made by pasting traffic cones cut from web-scraped photos "
    "(99succubus/road_cone-detection-improved and Glisten-zy/traffic_cone-identification on GitHub; "
    "no license stated, research use only) into street scenes from the sources above.")


class CardError(ValueError):
    """A model card field that the subnet would reject; the message names the field."""


def model_card(model_name: str, description: str, version: str = "0.1.0", submitted_by: str = "",
               submission_time: int | None = None) -> dict[str, Any]:
    """The subnet's model_card.json content, validated."""
    if not model_name or not isinstance(model_name, str):
        raise CardError("model_card.model_name: must be a non-empty string")
    if not VERSION_RE.match(str(version)):
        raise CardError(f"model_card.version: must look like X.Y.Z (digits), got {version!r}")
    if not isinstance(submitted_by, str):
        raise CardError("model_card.submitted_by: must be a hotkey ss58 string (or empty before submission)")
    t = int(time.time()) if submission_time is None else int(submission_time)
    if t < 0:
        raise CardError(f"model_card.submission_time: unix seconds >= 0, got {submission_time!r}")
    return {"model_name": model_name, "description": description, "version": str(version),
            "submitted_by": submitted_by, "submission_time": t}


def is_ss58(address: str) -> bool:
    """A well-formed SS58 address: base58 of prefix + 32-byte public key + the 2-byte blake2b checksum
    (what bittensor hotkeys look like; the chain is not asked)."""
    import hashlib

    import base58

    try:
        raw = base58.b58decode(address)
    except ValueError:
        return False
    # one-byte network prefixes (0-63) are what hotkeys use; two-byte ones shift the payload by one
    pre = 1 if raw and raw[0] < 64 else 2
    if len(raw) != pre + 32 + 2:
        return False
    digest = hashlib.blake2b(b"SS58PRE" + raw[:-2], digest_size=64).digest()
    return digest[:2] == raw[-2:]


def validate_card(card: dict[str, Any]) -> dict[str, Any]:
    """Check a model_card.json object as the subnet reads it: exactly its five fields, X.Y.Z version,
    unix-seconds time and, when set, an SS58 `submitted_by`. Returns the card; raises CardError."""
    if list(card) != list(CARD_KEYS):
        raise CardError(f"model_card: fields must be exactly {', '.join(CARD_KEYS)}, got {', '.join(card)}")
    if not isinstance(card["submission_time"], int) or isinstance(card["submission_time"], bool):
        raise CardError("model_card.submission_time: must be an integer (unix seconds)")
    if not isinstance(card["description"], str):
        raise CardError("model_card.description: must be a string")
    model_card(card["model_name"], card["description"], card["version"], card["submitted_by"],
               card["submission_time"])
    if card["submitted_by"] and not is_ss58(card["submitted_by"]):
        raise CardError(f"model_card.submitted_by: {card['submitted_by']!r} is not an SS58 address (a hotkey)")
    return card


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def data_licenses(specs: list[str]) -> dict[str, list[str]]:
    """source -> licenses, from the `license` column of the manifests among `specs`."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        p = Path(spec)
        csv_path = p if p.suffix.lower() == ".csv" else p / "manifest.csv"
        if not csv_path.is_file():
            continue
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                src = (row.get("source") or csv_path.parent.name).strip()
                lic = (row.get("license") or "").strip()
                out.setdefault(src, set())
                if lic:
                    out[src].add(lic)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _fmt(v: Any, nd: int = 3) -> str:
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _metrics_table(meta: dict[str, Any]) -> list[str]:
    rows = ["| set | images | roadwork | MCC | accuracy | ROC-AUC | sim. reward | measured by |",
            "|---|---|---|---|---|---|---|---|"]
    cmd = "the training run (see Training)"
    holdout = ", ".join(meta.get("split", {}).get("holdout_sources", [])) or "-"
    # models trained before validator versions existed in the simulator used 2026-01's challenges
    chal = (f"challenge simulator {meta.get('protocol', '2026-01')}, fixed seed" if meta.get("challenge", True)
            else "no challenge")
    for name, key in ((f"validation: held-out clips/sequences ({chal}; T and threshold fitted here)", "val"),
                      (f"cross-source: {holdout} ({chal})", "cross")):
        m = meta.get(key)
        if m:
            rows.append(f"| {name} | {m.get('n')} | {m.get('positives')} | {_fmt(m.get('mcc'))} | "
                        f"{_fmt(m.get('accuracy'))} | {_fmt(m.get('auc'))} | {_fmt(m.get('reward'))} | {cmd} |")
    for ev in meta.get("evaluations", []):
        m = ev.get("metrics", {})
        rows.append(f"| {ev.get('name')} | {m.get('n')} | {m.get('positives', '-')} | {_fmt(m.get('mcc'))} | "
                    f"{_fmt(m.get('accuracy'))} | {_fmt(m.get('auc'))} | {_fmt(m.get('reward'))} | `{ev.get('command')}` |")
    return rows


def readme(folder: str | Path, model_name: str | None = None) -> str:
    """The README model card for a trained folder, from its roadwork.json, config.json and train_config."""
    folder = Path(folder)
    meta = _read_json(folder / "roadwork.json")
    config = _read_json(folder / "config.json")
    name = model_name or folder.name
    arch = config.get("architectures", ["?"])[0]
    base = meta.get("init") or meta.get("arch") or config.get("architecture") or config.get("model_type", "?")
    lines = [f"# {name}", "",
             "Does this street image show roadwork (cones, barrels, barriers, work signs, workers, machines, "
             "excavation)? An image classifier for the NATIX StreetVision subnet (SN72), labels "
             "`{0: \"None\", 1: \"Roadwork\"}`, that the subnet's base miner loads unchanged.", "",
             "```python", "from transformers import pipeline",
             f"clf = pipeline(\"image-classification\", model=\"{name}\")",
             "p = {d[\"label\"]: d[\"score\"] for d in clf(\"street.jpg\")}[\"Roadwork\"]  # roadwork if p > 0.5",
             "```", "", "or `roadwork predict street.jpg --model <this folder>`.", "",
             "## Architecture", "",
             f"- `{arch}` ({base}{', ' + meta['mode'] + ' fine-tuning' if meta.get('init') else ', trained from scratch'}), "
             f"{_fmt(meta.get('params', 0) / 1e6, 2) if meta.get('params') else '?'}M parameters, "
             f"{_fmt(meta.get('size_mb'), 1)} MB (fp32 safetensors).",
             f"- Input: RGB resized to {meta.get('image_size', '?')}x{meta.get('image_size', '?')}, normalized "
             "as in `preprocessor_config.json`.",
             f"- Calibrated: temperature T = {_fmt(meta.get('temperature'))} and decision threshold "
             f"{_fmt(meta.get('threshold'))} (fitted on validation for a 50/50 label mix, as the validator asks) "
             "are folded into the classifier head, so the \"Roadwork\" score is the calibrated probability and "
             "0.5 is the decision point the validator uses.", ""]
    split = meta.get("split", {})
    lines += ["## Training data", ""]
    srcs = split.get("train_sources", {})
    lic = meta.get("licenses") or data_licenses(list(meta.get("data", [])))
    if srcs:
        lines += ["| source | none | roadwork | groups | license |", "|---|---|---|---|---|"]
        for s, c in sorted(srcs.items()):
            lines.append(f"| {s} | {c.get('none')} | {c.get('roadwork')} | {c.get('groups')} | "
                         f"{'; '.join(lic.get(s, [])) or 'see below'} |")
        lines.append("")
    lines.append(f"Validation: {split.get('n_val', '?')} images from whole held-out groups (val fraction "
                 f"{split.get('val_fraction', '?')}, seed {split.get('seed', '?')}). "
                 + (f"Cross-source test: all of {', '.join(split['holdout_sources'])}, never trained on."
                    if split.get("holdout_sources") else "No source was held out: this model trained on all of them."))
    lines += ["", DATA_NOTICE]
    if meta.get("synth"):
        lines += ["", f"{split.get('n_synth', '?')} synthetic images from `roadwork synth` joined training. "
                  + OBJECTS_NOTICE]
    lines += ["", "## Metrics", "", f"All under the SN72 challenge simulator (validator version "
              f"{meta.get('protocol', '2026-01')}) unless noted; MCC and accuracy decide at 0.5 on the calibrated score.", ""]
    lines += _metrics_table(meta)
    speed = meta.get("cpu_speed")
    lines += ["", "## Speed", ""]
    if speed:
        lines.append(f"On {speed.get('machine', 'CPU')}: {_fmt(speed.get('ms_per_image_batch1'), 1)} ms per image one "
                     f"at a time (as the miner answers), {_fmt(speed.get('images_per_s_batch16'), 1)} images/s in "
                     f"batches of 16. Measured by `{speed.get('command')}`.")
    else:
        lines.append("Not measured yet: `python -m roadwork.publish <folder> --measure-speed`.")
    lines += ["", "## Training", "", "```", meta.get("command", "(unknown)"), "```", "",
              f"Best epoch {meta.get('best_epoch', '?')} of {meta.get('epochs_run', '?')}, "
              f"{_fmt(meta.get('train_seconds'), 0)} s. The resolved settings are in `train_config.yaml` and the "
              "per-epoch metrics in `roadwork.json`.", "",
              "## Limitations", "",
              "Roadwork positives come from few sources (US dashcam clips of ROADWork, Indian streets of IDD-lite) "
              "and synthetic pastes; the cross-source number above is the honest estimate of how it does on "
              "cameras it has never seen. Night, rain and non-road scenes are barely represented.", ""]
    return "\n".join(lines)


def write_cards(folder: str | Path, model_name: str | None = None, version: str = "0.1.0", submitted_by: str = "",
                description: str | None = None, submission_time: int | None = None) -> dict[str, Any]:
    """Write `model_card.json` and `README.md` into a trained folder; returns the card."""
    folder = Path(folder)
    name = model_name or folder.name
    meta = _read_json(folder / "roadwork.json")
    cross = meta.get("cross", {}).get("mcc")
    desc = description or ("Roadwork image classifier (SN72), labels None/Roadwork, calibrated; "
                           f"{meta.get('arch') or meta.get('init') or 'transformers'}"
                           + (f", cross-source MCC {cross:.2f}" if isinstance(cross, float) else "") + ".")
    if meta.get("warning"):  # e.g. a degenerate calibration: the card must not read as a working model
        desc = f"WARNING: {meta['warning']}. {desc}"
    card = model_card(name, desc, version, submitted_by, submission_time)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (folder / "README.md").write_text(readme(folder, name))
    return card


# ---- the Hub's card: YAML front matter the Hub reads, over the README above ----------------------
HUB_TAGS = ("image-classification", "roadwork", "bittensor", "sn72", "natix", "streetvision")
# The weights are ours, the training images are not: the card points at LICENSE.md (written beside it)
# which lists each source's terms, instead of claiming an SPDX license the data would not allow.
LICENSE_ID, LICENSE_NAME, LICENSE_FILE = "other", "research-data-terms", "LICENSE.md"


def _eval_rows(meta: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(dataset type, dataset name, split, command, metrics) for every number the card reports."""
    chal = "challenge simulator, fixed seed" if meta.get("challenge", True) else "no challenge"
    train_cmd = meta.get("command", "")
    rows = []
    if meta.get("val"):
        rows.append(("roadwork-heldout-groups", f"held-out clips/sequences of the training sources ({chal})",
                     "validation", train_cmd, meta["val"]))
    if meta.get("cross"):
        holdout = ", ".join(meta.get("split", {}).get("holdout_sources", [])) or "held-out sources"
        rows.append(("roadwork-cross-source", f"cross-source: {holdout} ({chal})", "test", train_cmd, meta["cross"]))
    for i, ev in enumerate(meta.get("evaluations", [])):
        rows.append((f"roadwork-eval-{i}", str(ev.get("name")), "test", str(ev.get("command", "")),
                     ev.get("metrics", {})))
    return rows


def _real_sources(names: Any) -> list[str]:
    """Source names without the synthetic strata (`synth:camvid`, ...): synthesis is described apart."""
    return sorted(n for n in names if ":" not in n)


def hub_card(folder: str | Path, repo_id: str, datasets: list[str] | None = None) -> Any:
    """The Hub's README for `folder`: `huggingface_hub.ModelCard` whose front matter carries license,
    library, pipeline tag, tags, datasets and a model-index with every reported metric and the command
    that measured it; the body is `readme()`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    meta = _read_json(folder / "roadwork.json")
    name = repo_id.split("/")[-1]
    results = []
    for dtype, dname, split, command, m in _eval_rows(meta):
        for key, metric in (("mcc", "matthews_correlation"), ("accuracy", "accuracy"), ("auc", "roc_auc"),
                            ("reward", "sn72_simulated_reward")):
            if isinstance(m.get(key), (int, float)):
                results.append(EvalResult(task_type="image-classification", dataset_type=dtype, dataset_name=dname,
                                          dataset_split=split, metric_type=metric, metric_value=round(float(m[key]), 4),
                                          metric_args={"command": command} if command else None))
    arch = meta.get("arch") or _read_json(folder / "config.json").get("model_type")
    data = ModelCardData(
        license=LICENSE_ID, license_name=LICENSE_NAME, license_link=LICENSE_FILE, library_name="transformers",
        pipeline_tag="image-classification", tags=list(HUB_TAGS) + ([str(arch)] if arch else []),
        datasets=datasets or _real_sources(meta.get("split", {}).get("train_sources", {})) or None,
        base_model=meta.get("init") or None, model_name=name, eval_results=results or None)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{readme(folder, repo_id)}")


def license_text(folder: str | Path) -> str:
    """LICENSE.md for the Hub folder: the terms of every training source, from roadwork.json."""
    meta = _read_json(Path(folder) / "roadwork.json")
    lic = meta.get("licenses") or data_licenses(list(meta.get("data", [])))
    lines = ["# Terms of use", "", DATA_NOTICE, "", "| training source | license |", "|---|---|"]
    lines += [f"| {s} | {'; '.join(lic[s]) or 'no stated license'} |" for s in _real_sources(lic)]
    if meta.get("synth"):
        lines += ["", OBJECTS_NOTICE]
    return "\n".join(lines) + "\n"


def measure_cpu_speed(folder: str | Path, n: int = 20, threads: int | None = None) -> dict[str, Any]:
    """Milliseconds per image one at a time and images/s in batches of 16, on this machine's CPU."""
    import os
    import platform

    import numpy as np
    import torch
    from PIL import Image

    from roadwork.tiers.classifier import ClassifierTier

    if threads:
        torch.set_num_threads(threads)
    tier = ClassifierTier(str(folder), device="cpu", dtype="float32", batch_size=16)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype="uint8")) for _ in range(16)]
    tier.predict(imgs[:2])
    t0 = time.perf_counter()
    for i in range(n):
        tier.predict([imgs[i % 16]])
    one = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    reps = max(1, n // 8)
    for _ in range(reps):
        tier.predict(imgs)
    batch = 16 * reps / (time.perf_counter() - t0)
    return {"ms_per_image_batch1": one * 1000, "images_per_s_batch16": batch, "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
                       f"{torch.__version__}", "command": f"python -m roadwork.publish {folder} --measure-speed"}


def add_evaluation(folder: str | Path, name: str, command: str, metrics: dict[str, Any]) -> None:
    """Record an evaluation (e.g. `roadwork eval --json` output) in roadwork.json for the README."""
    path = Path(folder) / "roadwork.json"
    meta = _read_json(path)
    keep = {k: metrics.get(k) for k in ("n", "positives", "mcc", "accuracy", "auc", "reward") if k in metrics}
    if isinstance(metrics.get("reward"), dict):  # roadwork eval nests the reward simulation
        keep["reward"] = metrics["reward"].get("mean_reward")
    evals = [e for e in meta.get("evaluations", []) if e.get("name") != name]
    meta["evaluations"] = evals + [{"name": name, "command": command, "metrics": keep}]
    path.write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m roadwork.publish", description="Refresh a model folder's cards.")
    ap.add_argument("folder")
    ap.add_argument("--measure-speed", action="store_true", help="Measure CPU speed here and record it.")
    ap.add_argument("--model-name")
    ap.add_argument("--version", default=None)
    ap.add_argument("--hotkey", default=None, help="submitted_by: the miner hotkey (ss58).")
    ap.add_argument("--description")
    ap.add_argument("--eval-json", help="Output of `roadwork eval --json` to record in the card.")
    ap.add_argument("--eval-name", default="evaluation", help="Row name for --eval-json.")
    ap.add_argument("--eval-command", default="", help="The command that produced --eval-json.")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    meta = _read_json(folder / "roadwork.json")
    old = _read_json(folder / "model_card.json")
    if args.eval_json:
        add_evaluation(folder, args.eval_name, args.eval_command, json.loads(Path(args.eval_json).read_text()))
        meta = _read_json(folder / "roadwork.json")
    if args.measure_speed:
        meta["cpu_speed"] = measure_cpu_speed(folder)
        (folder / "roadwork.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(json.dumps(meta["cpu_speed"], indent=2))
    card = write_cards(folder, args.model_name or old.get("model_name"), args.version or old.get("version", "0.1.0"),
                       args.hotkey if args.hotkey is not None else old.get("submitted_by", ""),
                       args.description or old.get("description"))
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
