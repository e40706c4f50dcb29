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


# ---- roadwork publish: validate, stage, Hub card, upload ---------------------------------------------
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"  # the well-known dev key (substrate's //Alice)


def test_ss58_check_accepts_hotkeys_and_rejects_typos():
    assert publish.is_ss58(ALICE)
    assert not publish.is_ss58(ALICE[:-1] + "Z")  # checksum catches a one-character typo
    assert not publish.is_ss58("hk") and not publish.is_ss58("0OIl") and not publish.is_ss58("")


def test_validate_card_checks_the_subnet_format():
    card = publish.model_card("x/y", "d", "1.0.0", ALICE, 1_700_000_000)
    assert publish.validate_card(card) is card
    with pytest.raises(publish.CardError, match="submitted_by"):
        publish.validate_card({**card, "submitted_by": "my-hotkey"})
    with pytest.raises(publish.CardError, match="fields"):
        publish.validate_card({**card, "extra": 1})
    with pytest.raises(publish.CardError, match="submission_time"):
        publish.validate_card({**card, "submission_time": "yesterday"})


def test_publish_dry_run_of_the_shipped_model(tmp_path):
    """The done-when command: front matter that huggingface_hub parses back, a model_card.json that
    validates, and models/default itself untouched."""
    from huggingface_hub import ModelCard
    from typer.testing import CliRunner

    from roadwork.cli import app
    from conftest import REPO

    src = REPO / "models" / "default"
    before = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    out = tmp_path / "staged"
    res = CliRunner().invoke(app, ["publish", str(src), "--repo", "x/y", "--dry-run", "--out", str(out),
                                   "--hotkey", ALICE, "--version", "1.2.0"])
    assert res.exit_code == 0, res.output
    assert "would upload" in res.output and "model.safetensors" in res.output
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before

    card = ModelCard.load(out / "README.md")
    d = card.data
    assert (d.license, d.library_name, d.pipeline_tag) == ("other", "transformers", "image-classification")
    assert d.license_link == "LICENSE.md" and (out / "LICENSE.md").is_file()
    assert {"roadwork", "sn72", "bittensor"} <= set(d.tags) and "roadwork_clips" in d.datasets
    assert not any(":" in s for s in d.datasets)  # synthetic strata are not data sets
    mcc = {r.dataset_split: r.metric_value for r in d.eval_results if r.metric_type == "matthews_correlation"}
    meta = json.loads((src / "roadwork.json").read_text())
    assert mcc["validation"] == pytest.approx(meta["val"]["mcc"], abs=1e-4)
    assert all(r.metric_args["command"].startswith("roadwork ") for r in d.eval_results)
    assert "pipeline(\"image-classification\"" in card.text

    mc = publish.validate_card(json.loads((out / "model_card.json").read_text()))
    assert (mc["model_name"], mc["version"], mc["submitted_by"]) == ("x/y", "1.2.0", ALICE)


@pytest.mark.parametrize("args, msg", [(["--repo", "no-slash"], "OWNER/NAME"),
                                       (["--repo", "x/y", "--hotkey", "alice"], "SS58"),
                                       (["--repo", "x/y", "--version", "1.2"], "version")])
def test_publish_refuses_bad_arguments_in_one_line(tiny_vit_dir, tmp_path, args, msg):
    from roadwork.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["publish", str(tiny_vit_dir), "--dry-run", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output


def test_publish_refuses_a_folder_the_pipeline_cannot_load(tmp_path):
    from roadwork import hub

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(hub.PublishError, match="pipeline"):
        hub.stage(tmp_path, "x/y", tmp_path / "o", examples=hub.example_images(None))


@pytest.fixture
def fake_hub(monkeypatch):
    """huggingface_hub's real client pointed at the loopback FakeHub (what HF_ENDPOINT does at import),
    xet off (the fake speaks LFS basic transfer only), offline mode off for this test alone."""
    from huggingface_hub import constants

    from fake_hub import start_fake_hub

    hub, stop = start_fake_hub(token="hf_test_token")
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield hub
    stop()


def test_upload_through_huggingface_hub_to_a_loopback_hub(tiny_vit_dir, tmp_path, fake_hub):
    from rich.console import Console

    from roadwork import hub

    console = Console(record=True, width=200)
    code = hub.publish_main(tiny_vit_dir, "alice/roadwork-tiny", tmp_path / "staged", dry_run=False, private=True,
                            revision=None, create_pr=False, hotkey=ALICE, version="0.3.0", model_name=None,
                            description=None, examples=None, message="first upload", console=console)
    assert code == 0, console.export_text()
    assert fake_hub.repos["alice/roadwork-tiny"]["visibility"] == "private"
    (commit,) = fake_hub.commits
    staged = {p.name: p.read_bytes() for p in (tmp_path / "staged").iterdir()}
    assert commit["files"] == staged and commit["header"]["summary"] == "first upload"
    # the weights travelled as an LFS object (PUT), the text files inline in the commit
    assert any(r["method"] == "PUT" for r in fake_hub.requests)
    assert fake_hub.lfs and list(fake_hub.lfs.values())[0] == staged["model.safetensors"]
    assert all(r["auth"] == "Bearer hf_test_token" for r in fake_hub.requests if r["method"] == "POST")
    assert json.loads(commit["files"]["model_card.json"])["submitted_by"] == ALICE
    assert "uploaded:" in console.export_text()

    # again, to a new branch (the repo exists: the Hub's 409 is fine; the branch is created), then as a PR
    for revision, create_pr in (("v0.3", False), (None, True)):
        code = hub.publish_main(tiny_vit_dir, "alice/roadwork-tiny", tmp_path / "staged", dry_run=False,
                                private=False, revision=revision, create_pr=create_pr, hotkey=None, version="0.3.1",
                                model_name=None, description=None, examples=None, message=None, console=console)
        assert code == 0, console.export_text()
    assert ("alice/roadwork-tiny", "v0.3") in fake_hub.branches
    assert [(c["revision"], c["create_pr"]) for c in fake_hub.commits] == [("main", False), ("v0.3", False),
                                                                         ("main", True)]
    assert "/discussions/" in console.export_text()
    # a PR onto another branch is refused before anything is staged or sent
    n = len(fake_hub.requests)
    assert hub.publish_main(tiny_vit_dir, "alice/roadwork-tiny", tmp_path / "x", False, False, "v0.3", True, None,
                            None, None, None, None, None, console) == 2
    assert len(fake_hub.requests) == n and not (tmp_path / "x").exists()


def test_upload_without_a_token_says_how_to_log_in(tiny_vit_dir, tmp_path, fake_hub, monkeypatch):
    from huggingface_hub import constants
    from rich.console import Console

    from roadwork import hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    console = Console(record=True, width=200)
    code = hub.publish_main(tiny_vit_dir, "alice/t", tmp_path / "staged", False, False, None, False, None, None,
                            None, None, None, None, console)
    assert code == 1 and "HF_TOKEN" in console.export_text() and not fake_hub.commits
