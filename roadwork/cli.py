"""The `roadwork` command: one short function per verb; the work lives in the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Roadwork detection: predict, evaluate, train, serve and mine (SN72).")
console = Console(stderr=True)

ModelOpt = typer.Option(None, "--model", "-m", help="Model folder or hub id (default: the embedded model).")
ConfigOpt = typer.Option(None, "--config", "-c", help="Engine config YAML (configs/).")


def _engine(model: Optional[str], config: Optional[Path]):
    from roadwork.config import ConfigError, load_config
    from roadwork.engine import Engine

    try:
        cfg = load_config(config)
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    if model:
        cfg.tiers[0].model = model
    return Engine.from_config(cfg)


# ---- predict ------------------------------------------------------------------------------------
@app.command()
def predict(
    paths: list[str] = typer.Argument(..., help="Image files, folders, globs or video files."),
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    batch_size: int = typer.Option(16, help="Images per engine call."),
    fps: float = typer.Option(2.0, help="Sampling rate for video files."),
) -> None:
    """Probability of roadwork and a label for each image (and work-zone intervals for videos)."""
    from roadwork.predict import run_predict

    code = run_predict(paths, _engine(model, config), as_json=as_json, batch_size=batch_size, fps=fps,
                       console=console)
    raise typer.Exit(code)


# ---- eval ---------------------------------------------------------------------------------------
@app.command("eval")
def eval_(
    data: str = typer.Option(..., "--data", "-d", help="Labelled data: manifest CSV, image folder, parquet, video."),
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    challenge: bool = typer.Option(True, "--challenge/--no-challenge",
                                   help="Turn each image into a validator challenge (level 0-3 + JPEG q75)."),
    seed: int = typer.Option(0, help="Seed of the challenges, the --limit subset and the reward stream."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate a seeded random subset of N images."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write PNG plots and report.html here."),
    batch_size: int = typer.Option(32, min=1, help="Images per engine call."),
) -> None:
    """Metrics (overall, per augmentation level, source and tier) and the simulated SN72 reward."""
    from roadwork.evaluate import run_eval

    raise typer.Exit(run_eval(lambda: _engine(model, config), data, challenge=challenge, seed=seed, limit=limit,
                              as_json=as_json, report_dir=report, batch_size=batch_size, console=console))


# ---- data ---------------------------------------------------------------------------------------
@app.command()
def data(
    spec: str = typer.Argument(..., help="Manifest CSV, image folder, parquet file/folder, or video file/folder."),
    segments: Optional[Path] = typer.Option(None, help="Segments CSV for videos (default: segments.csv beside them)."),
    fps: float = typer.Option(2.0, help="Sampling rate for videos."),
    decode: bool = typer.Option(False, "--decode", help="Decode every image; list the unreadable ones (exit 1)."),
    split: Optional[float] = typer.Option(None, "--split", help="Show a group split with this validation fraction."),
    seed: int = typer.Option(0, help="Seed of the --split."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Images per source, label and group; skipped rows/frames; with --decode every unreadable file and why."""
    from roadwork.data.check import run_data_check

    raise typer.Exit(run_data_check(spec, segments=segments, fps=fps, decode=decode, val_fraction=split,
                                    seed=seed, as_json=as_json, console=console))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
