"""`roadwork ... --help` reads on an 80-column terminal (issue 8 item 6): every command and sub-command,
no line wider than 80, no flag name cut off, every option described; and `roadwork --version`."""

from __future__ import annotations

import contextlib
import io

import pytest
import typer
from typer.testing import CliRunner

from roadwork.cli import app


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "roadwork")
def test_help_fits_80_columns_and_describes_every_option(path):
    res = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    wide = [line for line in res.output.splitlines() if len(line) > 80]
    assert not wide and "…" not in res.output, res.output
    undescribed = [p.opts[0] for p in COMMANDS[path].params if p.param_type_name == "option" and not p.help]
    assert not undescribed, undescribed
    for p in COMMANDS[path].params:  # each flag's every spelling is shown whole
        if p.param_type_name == "option":
            assert all(o in res.output for o in p.opts), (p.opts, res.output)


def test_distill_help_fits_80_columns(monkeypatch):
    from roadwork.train.distill import main as distill_main

    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        distill_main(["--help"])
    assert e.value.code == 0 and "--teacher" in out.getvalue()
    assert not [line for line in out.getvalue().splitlines() if len(line) > 80], out.getvalue()


def test_version():
    from importlib.metadata import version

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"roadwork {version('roadwork')}"
