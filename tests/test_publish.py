"""Model cards: the subnet's model_card.json format and the README generated from a trained folder."""

from __future__ import annotations

import json

import pytest

from roadwork import publish


def test_model_card_has_exactly_the_subnet_fields():
    card = publish.model_card("roadwork-default", "a classifier", "1.2.3", "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX",
                              submission_time=1_700_000_000)
    assert list(card) == ["model_name", "description", "version", "submitted_by", "submission_time"]
    assert card["version"] == "1.2.3" and card["submission_time"] == 1_700_000_000
    assert isinstance(publish.model_card("m", "d")["submission_time"], int)
    json.dumps(card)  # plain JSON types only


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "1.2.3-rc1", "", "1.2.x"])
def test_bad_version_is_rejected_naming_the_field(version):
    with pytest.raises(publish.CardError, match="version"):
        publish.model_card("m", "d", version)


def test_empty_model_name_is_rejected():
    with pytest.raises(publish.CardError, match="model_name"):
        publish.model_card("", "d")


def _folder(tmp_path, synth=False):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["ResNetForImageClassification"],
                                                       "model_type": "resnet"}))
    meta = {
        "folded": True, "temperature": 1.234, "threshold": 0.42, "arch": "resnet10", "init": None, "mode": "full",
        "image_size": 224, "params": 4_900_000, "size_mb": 19.6, "best_epoch": 7, "epochs_run": 10,
        "train_seconds": 321.0, "challenge": True, "data": ["x/manifest.csv"], "synth": ["s"] if synth else [],
        "command": "roadwork train --data x/manifest.csv --out models/default",
        "val": {"n": 500, "positives": 60, "mcc": 0.91, "accuracy": 0.97, "auc": 0.99},
        "cross": {"n": 1900, "positives": 84, "mcc": 0.55, "accuracy": 0.9, "auc": 0.8, "reward": 0.3},
        "split": {"holdout_sources": ["idd_lite"], "n_val": 500, "val_fraction": 0.15, "seed": 0, "n_synth": 1000,
                  "train_sources": {"camvid": {"none": 600, "roadwork": 0, "groups": 4},
                                    "roadwork_clips": {"none": 40, "roadwork": 350, "groups": 14}}},
        "licenses": {"camvid": ["CamVid research use"], "roadwork_clips": ["ROADWork dataset (CMU), ODC-By 1.0"]},
        "cpu_speed": {"ms_per_image_batch1": 31.5, "images_per_s_batch16": 60.2, "machine": "test cpu",
                      "command": "python -m roadwork.publish models/default --measure-speed"},
        "evaluations": [{"name": "eval on shared data", "command": "roadwork eval --data d --json",
                         "metrics": {"n": 3691, "mcc": 0.7, "accuracy": 0.9, "auc": 0.93, "reward": 0.4}}],
    }
    (tmp_path / "roadwork.json").write_text(json.dumps(meta))
    return tmp_path


def test_write_cards_from_a_trained_folder(tmp_path):
    folder = _folder(tmp_path)
    card = publish.write_cards(folder, model_name="roadwork-default", version="0.2.0", submitted_by="hk")
    on_disk = json.loads((folder / "model_card.json").read_text())
    assert on_disk == card and card["submitted_by"] == "hk" and "0.55" in card["description"]
    text = (folder / "README.md").read_text()
    for needle in ("ResNetForImageClassification", "resnet10", "T = 1.234", "threshold 0.420",
                   "| roadwork_clips | 40 | 350 | 14 | ROADWork dataset (CMU), ODC-By 1.0 |",
                   "cross-source: idd_lite", "| 0.550 |", "31.5 ms per image",
                   "roadwork train --data x/manifest.csv --out models/default", "`roadwork eval --data d --json`",
                   "non-commercial", 'pipeline("image-classification"'):
        assert needle in text, needle
    assert "web-scraped" not in text  # no synthetic cones were used


def test_readme_names_the_cone_photos_when_synth_was_used(tmp_path):
    text = publish.readme(_folder(tmp_path, synth=True))
    assert "research use only" in text and "1000 synthetic images" in text


def test_data_licenses_reads_manifest_columns(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label,source,group,license\n"
                                           "a.jpg,1,roadwork_clips,g,ODC-By 1.0\nb.jpg,0,camvid,h,research\n"
                                           "c.jpg,0,camvid,h,research\n")
    assert publish.data_licenses([str(tmp_path)]) == {"camvid": ["research"], "roadwork_clips": ["ODC-By 1.0"]}


def test_cpu_speed_measurement_on_a_tiny_model(tiny_vit_dir):
    speed = publish.measure_cpu_speed(tiny_vit_dir, n=4)
    assert speed["ms_per_image_batch1"] > 0 and speed["images_per_s_batch16"] > 0
    assert "--measure-speed" in speed["command"]


def test_main_records_an_evaluation_and_refreshes_cards(tmp_path):
    folder = _folder(tmp_path)
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"n": 100, "mcc": 0.812, "accuracy": 0.95, "auc": 0.97,
                              "reward": {"mean_reward": 0.61}}))
    assert publish.main([str(folder), "--eval-json", str(ev), "--eval-name", "shared data, challenged",
                         "--eval-command", "roadwork eval --data d --json", "--version", "1.0.0"]) == 0
    meta = json.loads((folder / "roadwork.json").read_text())
    assert meta["evaluations"][-1]["metrics"] == {"n": 100, "mcc": 0.812, "accuracy": 0.95, "auc": 0.97,
                                                   "reward": 0.61}
    assert "| shared data, challenged | 100 |" in (folder / "README.md").read_text()
    assert json.loads((folder / "model_card.json").read_text())["version"] == "1.0.0"
