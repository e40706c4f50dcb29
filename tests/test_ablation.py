"""The ablation runner (issue 10 item 5): recipes from switches, skipped features, the probe set kept out
of training, seeds run as concurrent processes, mean ± sd tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from roadwork.train import ablation_report as report
from roadwork.train import recipes as rc
from roadwork.train.config import TrainConfig

from test_train import make_dataset, tiny_data  # noqa: F401 - the fixture

TINY = {"arch": "resnet-tiny", "init": None, "camera_jitter": False}


def make_synth(data_csv: Path, root: Path) -> Path:
    """A synth-like manifest: copies of the data's positives, each 'painted' on a camvid scene."""
    rows = list(csv.DictReader(data_csv.open()))
    scenes = [r for r in rows if r["source"] == "camvid"]
    out = []
    for i, r in enumerate(r for r in rows if r["label"] == "1"):
        scene = scenes[i % len(scenes)]
        out.append({"path": str(data_csv.parent / r["path"]), "label": 1, "source": f"synth:{scene['source']}",
                    "group": scene["group"], "scene_source": scene["source"], "scene_path": scene["path"]})
    root.mkdir(parents=True, exist_ok=True)
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return root / "manifest.csv"


def test_recipes_compose_switches_and_skip_what_has_not_landed():
    switches = dict(rc.SWITCHES, real=rc.Switch("real", "a switch whose field exists", {"label_smoothing": 0.0}),
                    ghost=rc.Switch("ghost", "a feature not landed", {"no_such_field": 1}))
    recipe, why = rc.resolve("both", ("real", "synth"), switches)
    assert why is None and recipe.overrides["label_smoothing"] == 0.0 and recipe.synth_set == rc.NEW_SET
    assert recipe.overrides["arch"] == "resnet10" and recipe.overrides["camera_jitter"] is False  # today's recipe
    today, _ = rc.resolve("today", (), switches)
    assert today.synth_set == rc.LEGACY_SET and today.label == "today"
    skipped, why = rc.resolve("g", ("real", "ghost"), switches)
    assert skipped is None and "no_such_field" in why and "not landed" in why
    name, parts = rc.parse_recipe("mix=real+synth", switches)
    assert (name, parts) == ("mix", ("real", "synth"))
    with pytest.raises(ValueError, match="unknown switch"):
        rc.parse_recipe("x=nope", switches)
    sw = rc.parse_switch("locmap:label_smoothing=0.05,camera_jitter=true")
    assert sw.overrides == {"label_smoothing": 0.05, "camera_jitter": True} and sw.help == rc.SWITCHES["locmap"].help


def test_plan_runs_every_seed_and_skips_missing_synth_sets(tmp_path):
    from roadwork.train.ablation import plan

    base = TrainConfig(data=["d"], out="o")
    recipes = {"today": (), "+synth": ("synth",)}
    runs, skipped = plan(base, {rc.LEGACY_SET: "legacy.csv"}, recipes, rc.SWITCHES, ["idd", "clips"], [0, 1],
                         {"idd_lite", "camvid", "kitti_road"}, tmp_path)
    assert skipped == {"+synth": f"needs --synth-set {rc.NEW_SET}=PATH",
                       "fold clips": "source roadwork_clips not in the data"}
    assert [(r.recipe.name, r.fold, r.seed) for r in runs] == [("today", "idd", 0), ("today", "idd", 1)]
    cfg = runs[1].cfg
    assert cfg.seed == 1 and cfg.holdout_source == ["idd_lite"] and cfg.synth == ["legacy.csv"]
    assert cfg.arch == "resnet10" and Path(cfg.out) == tmp_path / "runs" / "today__idd__s1"


def test_probe_frames_and_their_synthetic_images_stay_out_of_training(tiny_data, tmp_path):
    from roadwork.train.prepare import load_records
    from roadwork.train.probe import write_inputs

    synth = make_synth(tiny_data, tmp_path / "synth")
    data, probe, sets, counts = write_inputs(load_records([str(tiny_data)]), {"legacy": str(synth)},
                                             tmp_path / "in", groups=("camvid:0",))
    probe_rows = list(csv.DictReader(open(probe)))
    assert {r["group"] for r in probe_rows} == {"camvid:0"} and len(probe_rows) == 3
    assert "camvid:0" not in {r["group"] for r in csv.DictReader(open(data))}
    kept = list(csv.DictReader(open(sets["legacy"])))
    assert kept and all(r["group"] != "camvid:0" and Path(r["path"]).is_absolute() for r in kept)
    assert counts["synth-legacy-dropped"] > 0 and counts["probe"] == 3
    with pytest.raises(ValueError, match="no probe frames"):
        write_inputs(load_records([str(tiny_data)]), {}, tmp_path / "in2", groups=("nowhere:0",))


def test_tables_give_mean_and_sd_over_seeds_and_the_mean_over_folds():
    def row(fold, seed, auc, mcc, fpr):
        view = {"auc": auc, "mcc": mcc, "reward": 0.1, "n": 10, "positives": 4}
        return {"recipe": "today", "fold": fold, "seed": seed, "within": {"mcc": 0.5}, "epochs_run": 3,
                "scores": {"cross/224": view, "cross/native": view, "probe/224": {"fpr": fpr},
                           "probe/native": {"fpr": fpr}}}
    rows = [row("idd", 0, 0.6, 0.2, 0.1), row("idd", 1, 0.8, 0.4, 0.3), row("clips", 0, 0.9, 0.6, 0.2),
            {"recipe": "today", "fold": "clips", "seed": 1, "error": "boom"}]
    folds = {e["fold"]: e for e in report.per_fold(rows)}
    mean, sd, n = folds["idd"]["cross/224:auc"]
    assert (round(mean, 6), round(sd, 6), n) == (0.7, round(float(np.std([0.6, 0.8], ddof=1)), 6), 2)
    summary = report.per_recipe(list(folds.values()))[0]
    assert summary["mcc224"] == pytest.approx((0.3 + 0.6) / 2) and summary["min_mcc224"] == pytest.approx(0.3)
    md = report.markdown(rows, {"+init": "package missing"}, ["python -m roadwork.train.ablation ..."])
    assert "| today | idd (4/10) | 0,1 | 0.700 ± 0.141 | 0.300 ± 0.141 |" in md
    assert "today / clips / seed 1: boom" in md and "- +init: package missing" in md
    assert report.best_recipe([summary]) == "today"


@pytest.mark.slow
def test_run_ablation_trains_seeds_concurrently_and_writes_the_table(tiny_data, tmp_path):
    from roadwork.train.ablation import run_ablation

    synth = make_synth(tiny_data, tmp_path / "synth")
    base = TrainConfig(data=[str(tiny_data)], out=str(tmp_path / "abl"), epochs=1, batch_size=8, image_size=32,
                       workers=0, val_fraction=0.3, device="cpu", challenge=False, lr=3e-3)
    rows = run_ablation(base, {rc.LEGACY_SET: str(synth)}, {"today": (), "ghost": ("locmap",)}, ["idd"], [0, 1],
                        tmp_path / "abl", switches=dict(rc.SWITCHES, locmap=rc.Switch("locmap", "x", {"nope": 1})),
                        jobs=2, probe_groups=("camvid:0",), today=TINY, cache_workers=0)
    assert sorted(r["seed"] for r in rows) == [0, 1] and not any(r.get("error") for r in rows)
    for r in rows:
        assert r["scores"]["cross/224"]["n"] == 12 and r["scores"]["probe/native"]["n"] == 3
        assert 0 <= r["scores"]["probe/224"]["fpr"] <= 1
    doc = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert "nope" in doc["skipped"]["ghost"] and doc["best"] == "today"
    assert doc["train_commands"]["today"].startswith("roadwork train --data ")
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| today | idd (6/12) | 0,1 |" in md and "Skipped recipes" in md
    assert not list((tmp_path / "abl" / "runs").glob("*/model.safetensors"))  # weights not kept
