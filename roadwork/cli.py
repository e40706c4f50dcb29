"""The `roadwork` command: one short function per verb; the work lives in the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

# rich_markup_mode=None: click's plain help, which wraps to the terminal and shows long flag names whole
# (rich's panels cut `--subtensor.chain_endpoint` to `--subtensor.chain_endpoint…` at 80 columns)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None, help="Roadwork detection: predict, evaluate, train, serve and mine (SN72).")
console = Console(stderr=True)

from roadwork.challenge.protocols import DEFAULT_PROTOCOL, PROTOCOLS, protocol_help  # noqa: E402  (pure Python)

ModelOpt = typer.Option(None, "--model", "-m", help="Model folder or hub id (default: the embedded model).")
ConfigOpt = typer.Option(None, "--config", "-c", help="Engine config YAML (configs/).")


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"{value:g}: must be > 0")
    return value


FpsOpt = typer.Option(2.0, callback=_positive, help="Frames per second sampled from videos.")
# map.html's base map, for `predict --out` and `label` alike (label: None keeps the config's label.tiles)
TilesOpt = typer.Option(None, "--tiles", help="Base-map tile URL template .../{z}/{x}/{y}.png for map.html "
                        "(default: none, the map is drawn offline).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"roadwork {version('roadwork')}")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """Roadwork detection: predict, evaluate, train, serve and mine (SN72)."""


def _fail(message: object, code: int = 2) -> typer.Exit:
    """Print one error line (unwrapped: a terminal wraps it, a log keeps it whole); raise the result."""
    from rich.markup import escape  # a message's own brackets ('.[miner]', a path) are text, not markup

    console.print(f"[red]{escape(str(message))}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _protocol_ok(value: str) -> str:
    if value not in PROTOCOLS:
        raise typer.BadParameter(f"{value!r} is not a validator version (known: {', '.join(PROTOCOLS)})")
    return value


ProtocolOpt = typer.Option(DEFAULT_PROTOCOL, "--protocol", help=protocol_help(), callback=_protocol_ok)


def _engine(model: Optional[str], config: Optional[Path]):
    from roadwork.config import ConfigError, shell_config
    from roadwork.engine import Engine
    from roadwork.model_ref import ModelError

    try:
        return Engine.from_config(shell_config(config, model))
    except (ConfigError, ModelError) as e:  # each names the field or the model, and what to do
        raise _fail(e)


# ---- predict ------------------------------------------------------------------------------------
@app.command()
def predict(
    paths: list[str] = typer.Argument(..., help="Image files, folders, globs or video files."),
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    batch_size: int = typer.Option(16, min=1, help="Images per engine call."),
    fps: float = FpsOpt,
    views: Optional[str] = typer.Option(None, help="The images are views of one place: also print one decision, "
                                        "combined by noisy_or, max, mean_logit or mean."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write OUT/zones.geojson and OUT/map.html "
                                       "(positions: EXIF GPS of photos, --gpx for videos)."),
    gpx: Optional[Path] = typer.Option(None, "--gpx", help="GPS track of the video(s): .gpx, or .csv time_s,lat,lon "
                                       "(default: VIDEO.gpx beside each video)."),
    gps_offset: float = typer.Option(0.0, "--gps-offset", help="Seconds added to video time to match the track."),
    tiles: Optional[str] = TilesOpt,
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="Write each image with the model's location "
                                           "map over it to this folder (NAME.png; models trained with "
                                           "--head locmap)."),
) -> None:
    """Probability of roadwork and a label for each image (and work-zone intervals for videos)."""
    from roadwork.predict import HeatmapError, run_predict
    from roadwork.sequence import VIEW_METHODS

    if views is not None and views not in VIEW_METHODS:
        raise _fail(f"--views: unknown method {views!r} (known: {', '.join(VIEW_METHODS)})")
    geo = None
    if out is not None:
        from roadwork.geo import GeoCollector, GeoError

        try:
            geo = GeoCollector(gpx, gps_offset, tiles)
        except GeoError as e:
            raise _fail(str(e))
    try:
        code = run_predict(paths, _engine(model, config), as_json=as_json, batch_size=batch_size, fps=fps,
                           console=console, views=views, geo=geo, out=out, heatmap=heatmap)
    except HeatmapError as e:
        raise _fail(e)
    raise typer.Exit(code)


# ---- export-onnx --------------------------------------------------------------------------------
@app.command("export-onnx")
def export_onnx(
    model: str = typer.Argument(..., help="Classifier folder (save_pretrained)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write here instead of into the model folder."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write a static INT8 model (model.int8.onnx)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Calibration/check images (default: examples/)."),
    n: int = typer.Option(64, "--n", min=8, help="Calibration/check challenges."),
) -> None:
    """ONNX export (fp32 + INT8) for the onnxruntime CPU path; `predict` then uses it without CUDA."""
    from roadwork.fast.onnx_export import export_main

    raise typer.Exit(export_main(model, out, int8, data, n, console))


# ---- label --------------------------------------------------------------------------------------
# Flags left out keep the config's `label:` section (LabelConfig); show_default is its default
# (tests/test_cli_flags.py checks each one against the model).
@app.command()
def label(
    specs: list[str] = typer.Argument(..., help="Images, folders, globs, videos, manifests or parquet shards."),
    out: Path = typer.Option(..., "--out", "-o", help="Writes OUT/labels/part-*.parquet and OUT/summary.json "
                             "(and OUT/zones.geojson + OUT/map.html when inputs have GPS: EXIF of photos, "
                             "--gpx for videos)."),
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    fps: Optional[float] = typer.Option(None, help="Frames per second sampled from videos.", show_default="2.0"),
    batch_size: Optional[int] = typer.Option(None, help="Images per engine call.", show_default="32"),
    shard_size: Optional[int] = typer.Option(None, help="Items per shard (the unit of work and of --resume).",
                                             show_default="256"),
    num_workers: Optional[int] = typer.Option(None, help="Actors (default: one per CPU, or per GPU share)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join (default: start a local one)."),
    gpus_per_worker: Optional[float] = typer.Option(None, help="GPUs per actor (0.5 packs two per GPU).",
                                                    show_default="0.0"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", show_default="True",
                                          help="Skip shards whose part file exists."),
    local: bool = typer.Option(False, "--local", help="No Ray: label in this process."),
    gpx: Optional[Path] = typer.Option(None, "--gpx", help="GPS track of the video(s): .gpx, or .csv time_s,lat,lon "
                                       "(default: VIDEO.gpx beside each video)."),
    gps_offset: Optional[float] = typer.Option(None, "--gps-offset", show_default="0.0",
                                               help="Seconds added to video time to match the track."),
    tiles: Optional[str] = TilesOpt,
) -> None:
    """Label large image/video sets into parquet, scaled out on Ray (one engine per actor)."""
    from roadwork.label import label_main

    raise typer.Exit(label_main(specs, out, model, config, console, fps=fps, batch_size=batch_size,
                                shard_size=shard_size, num_workers=num_workers, address=address,
                                gpus_per_worker=gpus_per_worker, resume=resume, local=local or None,
                                gpx=gpx, gps_offset=gps_offset, tiles=tiles))


# ---- eval ---------------------------------------------------------------------------------------
@app.command("eval")
def eval_(
    data: str = typer.Option(..., "--data", "-d", help="Labelled data: manifest CSV, image folder, parquet, video."),
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    challenge: bool = typer.Option(True, "--challenge/--no-challenge",
                                   help="Turn each image into a validator challenge (see --protocol)."),
    protocol: str = ProtocolOpt,
    seed: int = typer.Option(0, help="Seed of the challenges, the --limit subset and the reward stream."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate a seeded random subset of N images."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write PNG plots and report.html here."),
    batch_size: int = typer.Option(32, min=1, help="Images per engine call."),
) -> None:
    """Metrics (overall, per augmentation level, source and tier) and the simulated SN72 reward."""
    from roadwork.evaluate import run_eval

    raise typer.Exit(run_eval(lambda: _engine(model, config), data, challenge=challenge, seed=seed, limit=limit,
                              as_json=as_json, report_dir=report, batch_size=batch_size, console=console,
                              protocol=protocol))


# ---- data ---------------------------------------------------------------------------------------
@app.command()
def data(
    spec: str = typer.Argument(..., help="Manifest CSV, image folder, parquet file/folder, or video file/folder."),
    segments: Optional[Path] = typer.Option(None, help="Segments CSV for videos (default: segments.csv beside them)."),
    fps: float = FpsOpt,
    decode: bool = typer.Option(False, "--decode", help="Decode every image; list the unreadable ones (exit 1)."),
    split: Optional[float] = typer.Option(None, "--split", help="Show a group split with this validation fraction."),
    seed: int = typer.Option(0, help="Seed of the --split."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Images per source, label and group; skipped rows/frames; with --decode every unreadable file and why."""
    from roadwork.data.check import run_data_check

    raise typer.Exit(run_data_check(spec, segments=segments, fps=fps, decode=decode, val_fraction=split,
                                    seed=seed, as_json=as_json, console=console))


# ---- serve --------------------------------------------------------------------------------------
@app.command()
def serve(
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    host: Optional[str] = typer.Option(None, help="Bind address.", show_default="127.0.0.1"),
    port: Optional[int] = typer.Option(None, help="Port.", show_default="8000"),
    api_key: Optional[str] = typer.Option(None, envvar="ROADWORK_API_KEY", help="Require this X-API-Key."),
    max_batch_size: Optional[int] = typer.Option(None, help="Most images per engine call.", show_default="32"),
    max_wait_ms: Optional[float] = typer.Option(None, help="Longest wait (ms) for a batch to fill.", show_default="5.0"),
    capture: Optional[str] = typer.Option(None, "--capture", help="Save uncertain inputs to this folder."),
) -> None:
    """HTTP API: POST /v1/predict, GET /healthz /readyz /metrics /docs."""
    from roadwork.serve.http import serve_main

    raise typer.Exit(serve_main(model, str(config) if config else None, {
        "host": host, "port": port, "api_key": api_key, "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms}, capture))


# ---- review -------------------------------------------------------------------------------------
@app.command()
def review(
    folder: Path = typer.Argument(..., help="A capture folder (serve/mine --capture DIR)."),
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8001, help="Port."),
    api_key: Optional[str] = typer.Option(None, envvar="ROADWORK_API_KEY", help="Require this key (open ?key=KEY once)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A model with a location map, for overlays."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Label captured images in the browser, most uncertain first; labels go to DIR/labels.csv."""
    from roadwork.review import review_main

    raise typer.Exit(review_main(folder, host, port, api_key, model, str(config) if config else None, console))


# ---- mine ---------------------------------------------------------------------------------------
def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"roadwork {version('roadwork')}")
        except PackageNotFoundError:  # a source tree without install
            print("roadwork (not installed)")
        raise typer.Exit(0)


# The flags `mine` and `doctor` share, defined once so that doctor checks exactly what mine would use.
# Default None keeps the config's value (MinerConfig, ServeConfig); show_default is that value
# (tests/test_cli_flags.py checks both commands against the config).
NetuidOpt = typer.Option(None, "--netuid", help="Subnet.", show_default="72")
WalletNameOpt = typer.Option(None, "--wallet-name", "--wallet.name", show_default="default",
                             help="Wallet (coldkey) name.")
WalletHotkeyOpt = typer.Option(None, "--wallet-hotkey", "--wallet.hotkey", show_default="default",
                               help="Hotkey name in that wallet.")
WalletPathOpt = typer.Option(None, "--wallet-path", "--wallet.path",
                             help="Wallets folder (default ~/.bittensor/wallets; with --local "
                                  "~/.cache/roadwork/local-wallets).")
NetworkOpt = typer.Option(None, "--subtensor-network", "--subtensor.network", help="finney | test | local | ws://...",
                          show_default="finney")
ChainEndpointOpt = typer.Option(None, "--subtensor.chain_endpoint", "--subtensor-chain-endpoint",
                                help="ws(s)://host:port of a subtensor node; overrides the network.")
AxonIpOpt = typer.Option(None, "--axon.ip", "--axon-ip", help="Bind address (default all).")
AxonPortOpt = typer.Option(None, "--axon-port", "--axon.port", show_default="8091", help="Port the axon listens on.")
ExternalIpOpt = typer.Option(None, "--axon-external-ip", "--axon.external_ip", help="IP announced on chain.")
ExternalPortOpt = typer.Option(None, "--axon-external-port", "--axon.external_port", help="Port announced on chain.")
DeadlineOpt = typer.Option(None, "--deadline", help="Seconds per answer.", show_default="8.0")
EngineUrlOpt = typer.Option(None, "--engine-url", help="Ask a running `roadwork serve` (http://host:8000) instead "
                            "of loading a model here.")
EngineApiKeyOpt = typer.Option(None, "--engine-api-key", envvar="ROADWORK_API_KEY", help="That server's --api-key.")


@app.command()
def mine(
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    netuid: Optional[int] = NetuidOpt,
    wallet_name: Optional[str] = WalletNameOpt,
    wallet_hotkey: Optional[str] = WalletHotkeyOpt,
    wallet_path: Optional[str] = WalletPathOpt,
    network: Optional[str] = NetworkOpt,
    chain_endpoint: Optional[str] = ChainEndpointOpt,
    axon_ip: Optional[str] = AxonIpOpt,
    axon_port: Optional[int] = AxonPortOpt,
    external_ip: Optional[str] = ExternalIpOpt,
    external_port: Optional[int] = ExternalPortOpt,
    max_workers: Optional[int] = typer.Option(None, "--axon.max_workers", "--axon-max-workers",
                                              help="Axon worker threads."),
    log_debug: bool = typer.Option(False, "--logging.debug", "--logging-debug", help="Debug logging."),
    log_trace: bool = typer.Option(False, "--logging.trace", "--logging-trace", help="Trace logging."),
    logging_dir: Optional[str] = typer.Option(None, "--logging.logging_dir", "--logging-dir",
                                              help="Also log to DIR/miner.log."),
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=lambda v: _print_version(v),
                                      help="Print the version and exit."),
    local: bool = typer.Option(False, "--local", help="No chain: loopback only, allow-list below."),
    allowed_hotkey: Optional[list[str]] = typer.Option(None, "--allowed-hotkey", help="Local mode allow-list."),
    permit: bool = typer.Option(False, "--require-validator-permit", "--blacklist.force_validator_permit",
                                help="Answer only hotkeys with a validator permit."),
    fallback: Optional[float] = typer.Option(None, "--fallback", help="Answer for unusable input.", show_default="0.5"),
    deadline: Optional[float] = DeadlineOpt,
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics here."),
    capture: Optional[str] = typer.Option(None, "--capture", help="Save uncertain inputs to this folder."),
    engine_url: Optional[str] = EngineUrlOpt,
    engine_api_key: Optional[str] = EngineApiKeyOpt,
) -> None:
    """SN72 miner: a bittensor axon answering ImageSynapse challenges."""
    try:
        from roadwork.serve.miner import mine_main
    except ImportError as e:  # bittensor (or one of its pins) missing: name the install command
        if not any(name in str(e) for name in ("bittensor", "substrate", "httpx")):
            raise
        from roadwork.serve import MINER_INSTALL

        raise _fail(f"roadwork mine needs bittensor and httpx ({e}); install them with: {MINER_INSTALL}")

    raise typer.Exit(mine_main(model, str(config) if config else None, {
        "netuid": netuid, "wallet_name": wallet_name, "wallet_hotkey": wallet_hotkey, "wallet_path": wallet_path,
        "network": network, "chain_endpoint": chain_endpoint, "axon_ip": axon_ip, "max_workers": max_workers,
        "logging_debug": log_debug or None, "logging_trace": log_trace or None, "logging_dir": logging_dir,
        "axon_port": axon_port, "external_ip": external_ip, "external_port": external_port,
        "local": local or None, "allowed_hotkeys": allowed_hotkey or None, "require_validator_permit": permit or None,
        "fallback_prediction": fallback, "metrics_port": metrics_port, "engine_url": engine_url,
        "engine_api_key": engine_api_key}, {"deadline_s": deadline}, capture))


# ---- doctor -------------------------------------------------------------------------------------
@app.command()
def doctor(
    model: Optional[str] = ModelOpt,
    config: Optional[Path] = ConfigOpt,
    netuid: Optional[int] = NetuidOpt,
    wallet_name: Optional[str] = WalletNameOpt,
    wallet_hotkey: Optional[str] = WalletHotkeyOpt,
    wallet_path: Optional[str] = WalletPathOpt,
    network: Optional[str] = NetworkOpt,
    chain_endpoint: Optional[str] = ChainEndpointOpt,
    axon_ip: Optional[str] = AxonIpOpt,
    axon_port: Optional[int] = AxonPortOpt,
    external_ip: Optional[str] = ExternalIpOpt,
    external_port: Optional[int] = ExternalPortOpt,
    local: bool = typer.Option(False, "--local", help="Check what `mine --local` would use; skip the chain."),
    deadline: Optional[float] = DeadlineOpt,
    engine_url: Optional[str] = EngineUrlOpt,
    engine_api_key: Optional[str] = EngineApiKeyOpt,
) -> None:
    """Check a miner setup with mine's flags: packages, wallet, axon port and address, the model (or
    --engine-url) on one challenge per validator version, registration. Exit 1 if any check fails."""
    from roadwork.serve.doctor import doctor_main

    raise typer.Exit(doctor_main(model, str(config) if config else None, {
        "netuid": netuid, "wallet_name": wallet_name, "wallet_hotkey": wallet_hotkey, "wallet_path": wallet_path,
        "network": network, "chain_endpoint": chain_endpoint, "axon_ip": axon_ip, "axon_port": axon_port,
        "external_ip": external_ip, "external_port": external_port, "local": local or None,
        "engine_url": engine_url, "engine_api_key": engine_api_key}, {"deadline_s": deadline}))


# ---- query --------------------------------------------------------------------------------------
@app.command()
def query(
    images: list[str] = typer.Argument(..., help="Image files to send, one synapse each."),
    local: bool = typer.Option(False, "--local", help="The miner runs here (mine --local): no chain, "
                               "no public-IP lookup."),
    port: int = typer.Option(8091, "--port", help="The miner's --axon.port."),
    host: str = typer.Option("127.0.0.1", "--host", help="The miner's address."),
    wallet_name: str = typer.Option("default", "--wallet.name", "--wallet-name", help="The miner's wallet."),
    wallet_hotkey: str = typer.Option("default", "--wallet.hotkey", "--wallet-hotkey", help="Its hotkey."),
    wallet_path: Optional[str] = typer.Option(None, "--wallet.path", "--wallet-path",
                                              help="Wallets folder (default: mine --local's)."),
    caller: Optional[str] = typer.Option(None, "--caller-wallet", help="Sign with this wallet of that folder "
                                         "(default: the miner's own; it must pass --allowed-hotkey)."),
    timeout: float = typer.Option(9.0, "--timeout", callback=_positive, help="Seconds per answer (the "
                                  "validator's 9 s)."),
) -> None:
    """Send images to your own miner through a real bittensor dendrite; print its answers."""
    if not local:
        raise _fail("roadwork query talks to a miner on this machine only: pass --local")
    try:
        from roadwork.serve.query import query_main
    except ImportError as e:
        if "bittensor" not in str(e):
            raise
        from roadwork.serve import MINER_INSTALL

        raise _fail(f"roadwork query needs bittensor ({e}); install it with: {MINER_INSTALL}")
    raise typer.Exit(query_main(images, host, port, wallet_name, wallet_hotkey, wallet_path, caller, timeout,
                                print, _fail))  # _fail prints the line; its exit code is query_main's


# ---- challenge ----------------------------------------------------------------------------------
challenge_app = typer.Typer(no_args_is_help=True, help="The SN72 validator's challenges: check against the "
                                                       "reference, write challenge sets.")
app.add_typer(challenge_app, name="challenge")


@challenge_app.command()
def check(reference: Path = typer.Option(..., "--reference",
                                         help="challenge_reference folder (cases.json, cases_2026.json).")
          ) -> None:
    """Run every reference case of all three versions; exit 1 if any differs beyond tolerance."""
    from roadwork.challenge.reference import check_main

    raise typer.Exit(check_main(reference, console))


@challenge_app.command()
def make(
    data: str = typer.Option(..., "--data", help="Manifest CSV, image folder, parquet or videos."),
    out: Path = typer.Option(..., "--out", help="Folder for the JPEGs, labels.csv and manifest.csv."),
    seed: int = typer.Option(0, "--seed", help="Same seed and data -> identical files."),
    n: Optional[int] = typer.Option(None, "--n", help="A seeded random subset of this many images."),
    protocol: str = ProtocolOpt,
) -> None:
    """Write challenge JPEGs exactly as sent on the wire, with their labels and augmentations."""
    from roadwork.challenge.dataset import make_main

    raise typer.Exit(make_main(data, out, seed, n, console, protocol=protocol))


@challenge_app.command()
def versions() -> None:
    """The validator versions the simulator reproduces, and the subnet's status."""
    from roadwork.challenge.protocols import SUBNET_STATUS

    for p in PROTOCOLS.values():
        mark = " (default)" if p.name == DEFAULT_PROTOCOL else ""
        print(f"{p.name}{mark}  {p.commits}\n    {p.summary}")
    print(f"status: {SUBNET_STATUS}")


# ---- calibrate-cascade --------------------------------------------------------------------------
@app.command("calibrate-cascade")
def calibrate_cascade(
    data: str = typer.Option(..., "--data", "-d", help="Labelled images (manifest, folder, parquet, videos)."),
    config: Optional[Path] = ConfigOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the calibrated config YAML."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Max mean cost per image (ms): maximize MCC under it."),
    target_accuracy: Optional[float] = typer.Option(None, "--target-accuracy", help="Reach this accuracy at least cost."),
    fit_calibrators: bool = typer.Option(True, help="Fit calibrators for detector/zero-shot/VLM tiers that have none."),
    limit: Optional[int] = typer.Option(None, help="Use a random subset of this many images."),
    probs: Optional[Path] = typer.Option(None, "--probs", help="Cache of tier outputs (.npz): read if present, else written."),
) -> None:
    """Fit the cascade's escalation bands (and stacker, tier calibrators) on labelled data."""
    from rich.table import Table

    from roadwork.router_bands import calibrate_cascade as run

    if budget is not None and target_accuracy is not None:
        console.print("[red]--budget and --target-accuracy are alternatives; give one[/red]")
        raise typer.Exit(2)
    fit = run(data, str(config) if config else None, str(out), budget, target_accuracy, fit_calibrators, limit,
              str(probs) if probs else None, log=console.print)
    o = fit.outcome
    table = Table(title=f"cascade on {len(o.prob)} images ({fit.goal}): accuracy {o.accuracy:.4f}, "
                        f"MCC {o.mcc:.4f}, mean cost {o.mean_cost:.1f} ms")
    for col in ("tier", "band", "reached", "answered", "acc answered", "cost ms", "alone acc", "alone MCC"):
        table.add_column(col)
    for row, band in zip(fit.table, fit.bands):
        acc = row["accuracy_answered"]
        table.add_row(row["tier"], f"{band[0]:.2f}-{band[1]:.2f}", str(row["reached"]), str(row["answered"]),
                      "-" if acc is None else f"{acc:.4f}", f"{row['cost_ms']:.1f}", f"{row['alone_accuracy']:.4f}",
                      f"{row['alone_mcc']:.4f}")
    console.print(table)
    console.print(f"wrote {out}")


# ---- train --------------------------------------------------------------------------------------
# The flags are TrainConfig's fields (one line there adds a setting here and to `python -m roadwork.train`).
from roadwork.cli_options import typer_flags  # noqa: E402  (pydantic only)
from roadwork.train.config import TrainConfig  # noqa: E402  (pydantic only; training imports torch when it runs)


@app.command()
@typer_flags(TrainConfig, data=dict(names=("-d",), required=True), out=dict(names=("-o",), required=True),
             protocol=dict(callback=_protocol_ok))
def train(**args: object) -> None:
    """Train (or fine-tune, LoRA/DoRA) a roadwork classifier, calibrate it, and save a pipeline-ready folder.

    Same flags under `torchrun` (DDP), or as `python -m roadwork.train`."""
    from roadwork.cli_options import from_flags
    from roadwork.model_ref import resolve_model
    from roadwork.train.finetune import train as run

    try:
        cfg = from_flags(TrainConfig, args)
        if cfg.init:  # fail before the data is read, not after
            from roadwork.train import pretrained

            if pretrained.is_pretrained(cfg.init):
                pretrained.weights_path(cfg.init)  # its weights package is installed
            else:
                resolve_model(cfg.init, "--init")
        run(cfg)
    except ValueError as e:
        raise _fail(e)


# ---- distill ------------------------------------------------------------------------------------
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def distill(ctx: typer.Context) -> None:
    """Teach a fast student a teacher's cached soft labels (a cascade config, or model folders averaged),
    with every `roadwork train` flag. `roadwork distill --help` lists them."""
    from roadwork.train.distill import main as distill_main

    raise typer.Exit(distill_main(ctx.args))


# ---- publish ------------------------------------------------------------------------------------
@app.command()
def publish(
    folder: Path = typer.Argument(..., help="A trained model folder (save_pretrained + roadwork.json)."),
    repo: str = typer.Option(..., "--repo", help="Hub model repo OWNER/NAME."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and stage into --out, print, upload nothing."),
    out: Optional[Path] = typer.Option(None, "--out", help="Staging folder (default runs/publish/OWNER--NAME)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created if missing)."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing."),
    hotkey: Optional[str] = typer.Option(None, "--hotkey", help="Miner hotkey SS58 address: model_card.submitted_by."),
    version: Optional[str] = typer.Option(None, "--version", help="model_card.json version X.Y.Z (default: the folder's)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="model_card.json model_name (default: --repo)."),
    description: Optional[str] = typer.Option(None, "--description", help="model_card.json description."),
    examples: Optional[Path] = typer.Option(None, "--examples", help="Images the folder must answer (default examples/)."),
    message: Optional[str] = typer.Option(None, "--message", help="Commit message."),
) -> None:
    """Validate a model folder with pipeline("image-classification"), write its Hub card and the subnet's
    model_card.json, and upload it to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`)."""
    from roadwork.hub import publish_main

    raise typer.Exit(publish_main(folder, repo, out, dry_run, private, revision, create_pr, hotkey, version,
                                  model_name, description, examples, message, console))


# ---- fit-color ----------------------------------------------------------------------------------
@app.command("fit-color")
def fit_color(
    data: str = typer.Option(..., "--data", "-d", help="Labelled images (manifest, folder, parquet, videos)."),
    out: Path = typer.Option(..., "--out", "-o", help="The colour model json (tier config `model:`)."),
    holdout_source: Optional[list[str]] = typer.Option(None, help="Validate on this whole source; repeatable."),
    val_fraction: float = typer.Option(0.15, help="Else validate on this share of groups; 0 = fit on everything."),
    challenge: bool = typer.Option(True, "--challenge/--no-challenge", help="Features of validator challenges."),
    seed: int = typer.Option(0, help="Seed for the challenges and the group split."),
    c: float = typer.Option(1.0, "--c", help="Inverse L2 strength of the logistic regression."),
    cache: Optional[str] = typer.Option(None, help="Feature cache (.npz) reused across runs with the same seed."),
) -> None:
    """Fit the colour/stripe-cue tier (kind `color`) and print its train/validation metrics."""
    from roadwork.train.color import fit_color_main

    raise typer.Exit(fit_color_main(data, out, holdout_source or [], val_fraction, challenge, seed, c, cache,
                                    console))


# ---- synth --------------------------------------------------------------------------------------
@app.command()
def synth(
    data: str = typer.Option(..., "--data", "-d", help="Scenes: a manifest (its label-0 images are used)."),
    objects: str = typer.Option(..., "--objects", help="objects/ folder with boxes.csv, a saved bank, or 'none'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: images/, manifest.csv, synth.json, bank/."),
    n: int = typer.Option(1000, "--n", min=0, help="Synthetic positives."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
    hard_negatives: int = typer.Option(0, "--hard-negatives", min=0, help="Hard negatives (label 0)."),
    exclude_source: Optional[list[str]] = typer.Option(None, "--exclude-source", help="Scene source to leave out; repeatable."),
    max_side: int = typer.Option(320, "--max-side", min=16, help="Scenes are downscaled to this long side first."),
    legacy: bool = typer.Option(False, "--legacy", help="Synthesis as before issue 10 (the shipped model's)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="A synthesis switch KEY=VALUE (SynthConfig); repeatable."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes (the same images for any number)."),
) -> None:
    """Copy-paste synthesis: roadwork objects (and hard negatives) pasted onto the road of label-0 scenes,
    each image with its roadwork mask (masks/*.png)."""
    from roadwork.data import DataError
    from roadwork.synth.cone_cutouts import BankError
    from roadwork.synth.config import SynthConfig
    from roadwork.synth.writer import run_synth

    try:
        config = (SynthConfig.legacy() if legacy else SynthConfig()).with_overrides(set_ or [])
        run_synth(data, objects, out, n, seed, hard_negatives, exclude_source or [], max_side, console, config,
                  workers)
    except (DataError, BankError, ValueError, RuntimeError) as e:  # each names the file or input
        raise _fail(e)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
