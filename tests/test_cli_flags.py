"""The flags of `train`, `mine` and `label` against the config models they fill: names, defaults, help.

`train`'s flags are generated from TrainConfig (roadwork.cli_options); these tests keep the generator
and the command honest: a command line given no optional flag must build exactly the model's
defaults, and every setting a run can have must survive `command()` -> the CLI -> the model.
"""

from __future__ import annotations

import enum

import pytest
import typer.main
from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.cli_options import default_of, flag
from roadwork.train.config import TrainConfig


def _params(command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    return {p.name: p for p in cmd.params if p.name != "help"}


@pytest.fixture
def captured(monkeypatch) -> list[TrainConfig]:
    """What `roadwork train` hands the trainer (nothing is trained)."""
    import roadwork.train.finetune as finetune

    runs: list[TrainConfig] = []
    monkeypatch.setattr(finetune, "train", lambda cfg: runs.append(cfg))
    return runs


def test_train_flags_are_the_config_fields_with_their_defaults_and_help():
    params = _params("train")
    assert list(params) == list(TrainConfig.model_fields)
    for name, field in TrainConfig.model_fields.items():
        p = params[name]
        assert flag(name) in p.opts, name
        assert p.help == field.description, name
        if name in ("data", "out"):  # a run needs them: required on the command line
            assert p.required, name
            continue
        default = p.default.value if isinstance(p.default, enum.Enum) else p.default
        want = default_of(field)
        assert (default if default is not None or not isinstance(want, list) else []) == want, name


def test_train_without_optional_flags_builds_the_config_defaults(captured):
    result = CliRunner().invoke(app, ["train", "--data", "d.csv", "-o", "runs/x"])
    assert result.exit_code == 0, result.output
    assert captured == [TrainConfig(data=["d.csv"], out="runs/x")]


def test_every_setting_round_trips_through_the_cli(captured):
    changed = TrainConfig(data=["a.csv", "b"], out="o", arch="convnext-atto", mode="lora", epochs=3,
                          batch_size=7, lr=1e-3, weight_decay=0.0, warmup_epochs=0.5, label_smoothing=0.0,
                          image_size=96, val_fraction=0.2, holdout_source=["idd_lite", "kitti_road"],
                          synth=["s"], camera_jitter=False, challenge=False, challenge_p=0.1,
                          protocol="2026-04", camera_p=0.2, letterbox_p=0.5, balance="loss", patience=2, seed=3, workers=1,
                          device="cpu", lora_rank=4, time_limit=1.5, limit=9, keep_checkpoints=True,
                          model_name="m", version="1.2.3", pool="max", mask_weight=0.5)
    # --head locmap needs --mode full, so the head round-trips in a second config
    located = TrainConfig(data=["a.csv"], out="o", arch="resnet10", head="locmap", pool="lse")
    # every field but those command() leaves out on purpose (and head, set in `located`) differs from its default
    same = {n for n, f in TrainConfig.model_fields.items() if getattr(changed, n) == default_of(f)}
    assert same == {"init", "resume", "smoke", "head"}
    for cfg in (changed, located):
        captured.clear()
        result = CliRunner().invoke(app, cfg.command().split()[1:])
        assert result.exit_code == 0, result.output
        assert captured == [cfg]


def test_a_refused_value_is_one_line_naming_the_flag(captured):
    result = CliRunner().invoke(app, ["train", "--data", "d", "--out", "o", "--epochs", "0"])
    assert result.exit_code == 2 and not captured
    assert "--epochs" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", "--data", "d", "--out", "o", "--protocol", "2025"])
    assert result.exit_code == 2 and "2025" in result.output


# ---- mine, label, serve, doctor: flags that override a config section (None = keep the config's) ---
def _shell(monkeypatch, command: str) -> list[dict]:
    """Runs of `roadwork COMMAND` as {"section.field": value} overrides, with the shell's body faked."""
    import sys
    import types

    runs: list[dict] = []

    def sections(**parts: dict) -> None:
        runs.append({f"{sec}.{k}": v for sec, d in parts.items() for k, v in d.items() if v is not None})

    fake = {
        "mine": ("roadwork.serve.miner", "mine_main",
                 lambda model, config, miner, serve, capture: sections(miner=miner, serve=serve) or 0),
        "label": ("roadwork.label", "label_main",
                  lambda specs, out, model, config, console, **kw: sections(label=kw) or 0),
        "serve": ("roadwork.serve.http", "serve_main", lambda model, config, serve, capture: sections(serve=serve) or 0),
        "doctor": ("roadwork.serve.doctor", "doctor_main",
                   lambda model, config, miner, serve: sections(miner=miner, serve=serve) or 0),
    }[command]
    module = types.ModuleType(fake[0])
    setattr(module, fake[1], fake[2])
    monkeypatch.setitem(sys.modules, fake[0], module)
    return runs


def _value_for(p) -> list[str]:
    """A command-line value of the parameter's type (bool flags take none)."""
    if p.is_flag:
        return []
    return [{int: "7", float: "0.25"}.get(p.type_descriptor.annotation, "x")]


LEAD = {"mine": [], "serve": [], "doctor": [], "label": ["a.jpg", "--out", "o"]}
NOT_CONFIG = {"model", "config", "capture", "show_version", "specs", "out"}


@pytest.mark.parametrize("command", ["mine", "label", "serve", "doctor"])
def test_shell_flags_name_config_fields_and_show_their_defaults(command, monkeypatch):
    from roadwork.config import Config

    runs = _shell(monkeypatch, command)
    result = CliRunner().invoke(app, [command, *LEAD[command]])
    assert result.exit_code == 0, result.output
    assert runs == [{}], "a flag left out must keep the config's value (default None)"
    defaults = Config().model_dump()
    checked = 0
    for name, p in _params(command).items():
        if name in NOT_CONFIG:
            continue
        runs.clear()
        result = CliRunner().invoke(app, [command, *LEAD[command], p.opts[0], *_value_for(p)])
        assert result.exit_code == 0, (name, result.output)
        assert len(runs) == 1 and len(runs[0]) == 1, f"{p.opts[0]} must set exactly one config field: {runs}"
        (path,) = runs[0]
        section, field = path.split(".")
        assert field in defaults[section], path
        want = defaults[section][field]
        shown = p.show_default if isinstance(p.show_default, str) else p.default
        if want is None:
            assert shown in (None, False), f"{p.opts[0]}: shows a default the config does not have"
        else:  # the default the help shows is the config's (as the flag's type reads it)
            assert shown is not None, f"{p.opts[0]}: show_default=\"{want}\" (the {path} default)"
            assert str(shown) == str(want), f"{p.opts[0]}: shows {shown}, the {path} default is {want}"
        checked += 1
    assert checked >= {"mine": 15, "label": 7, "serve": 4, "doctor": 14}[command]
