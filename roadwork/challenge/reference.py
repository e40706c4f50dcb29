"""Check the simulator against reference outputs of the validator's own code (`challenge_reference/`).

Pass rule (issue 2): a uint8 case fails when more than 0.1% of its pixels differ by more than one grey
level (in any channel); a float case fails when any value is off by more than 1e-4; the wire JPEG must be
byte-identical, or else its decoded pixels must pass the uint8 rule (the result says which was compared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from roadwork.challenge import ops

U8_MAX_FRACTION = 0.001  # of pixels allowed to differ by more than U8_TOLERANCE
U8_TOLERANCE = 1
FLOAT_TOLERANCE = 1e-4


@dataclass
class CaseResult:
    case: str          # the output file's stem, e.g. "boston_9s__CS1"
    op: str            # level0, CS, CC, JPEG, GNC, GB, rotate+resized_crop, wire_jpeg
    compared: str      # "uint8", "float32" or "bytes" (wire_jpeg falls back to "decoded uint8")
    max_error: float   # grey levels for uint8, absolute for float, 0/1 for bytes
    pct_off: float     # % of pixels (float: values) beyond the tolerance
    passed: bool


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def compare_u8(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, bool]:
    if ours.shape != ref.shape:
        return float("inf"), 100.0, False
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    per_pixel = diff.max(axis=-1) if diff.ndim == 3 else diff
    frac = float((per_pixel > U8_TOLERANCE).mean())
    return float(diff.max()), 100.0 * frac, frac <= U8_MAX_FRACTION


def compare_float(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, bool]:
    if ours.shape != ref.shape:
        return float("inf"), 100.0, False
    err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    worst = float(err.max())
    return worst, 100.0 * float((err > FLOAT_TOLERANCE).mean()), worst <= FLOAT_TOLERANCE


def _gnc_noise(seed: int) -> ops.Noise:
    # The reference seeded numpy's legacy global generator right before one np.random.randn(H, W, 3);
    # a private RandomState with that seed yields the same numbers without touching global state.
    state = np.random.RandomState(seed)
    return lambda shape: state.randn(*shape)


def run_case(case: dict, root: Path) -> CaseResult:
    op = case["op"]
    src, out = root / case["input"], root / case["output"]
    for p in (src, out):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: reference file named in {root / 'cases.json'} is missing")
    name = out.stem
    if op == "level0":
        return CaseResult(name, op, "uint8", *compare_u8(np.asarray(ops.level0(Image.open(src))), _rgb(out)))
    if op in ops.PARAMS:
        strength = int(case["strength"])
        if "param" in case and not np.isclose(float(case["param"]), ops.param(op, strength)):
            raise ValueError(f"{name}: cases.json gives {op} strength {strength} param {case['param']}, "
                             f"ours is {ops.param(op, strength)}")
        noise = _gnc_noise(int(case["numpy_seed"])) if op == "GNC" else None
        bgr = ops.distort(_rgb(src)[:, :, ::-1], op, strength, noise)
        return CaseResult(name, op, "uint8", *compare_u8(bgr[:, :, ::-1], _rgb(out)))
    if op == "rotate+resized_crop":
        ours = ops.rotate_resized_crop(Image.open(src), float(case["angle_deg"]),
                                       tuple(case["crop_top_left_height_width"]))
        return CaseResult(name, op, "float32", *compare_float(ours, np.load(out)))
    if op == "wire_jpeg":
        ours, ref = ops.jpeg_bytes(ops.level0(Image.open(src))), out.read_bytes()
        if ours == ref:
            return CaseResult(name, op, "bytes", 0.0, 0.0, True)
        decoded = np.asarray(Image.open(BytesIO(ours)).convert("RGB"))
        return CaseResult(name, op, "decoded uint8", *compare_u8(decoded, _rgb(out)))
    raise ValueError(f"{name}: unknown op {op!r} in {root / 'cases.json'}")


def run_reference_check(reference_dir: str | Path) -> list[CaseResult]:
    """Run every case of `reference_dir/cases.json`; missing files raise FileNotFoundError naming them."""
    root = Path(reference_dir)
    index = root / "cases.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no cases.json in the reference folder")
    try:
        cases = json.loads(index.read_text())["cases"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a reference index with a 'cases' list ({e})") from None
    return [run_case(c, root) for c in cases]


def render(results: list[CaseResult], console) -> None:
    """A rich table of the results and a one-line verdict."""
    from rich.table import Table

    table = Table(title="SN72 challenge simulator vs validator reference")
    for col, just in [("case", "left"), ("op", "left"), ("compared", "left"), ("max error", "right"),
                      ("% pixels off", "right"), ("pass", "center")]:
        table.add_column(col, justify=just)
    for r in results:
        err = f"{r.max_error:.2e}" if r.compared == "float32" else f"{r.max_error:g}"
        table.add_row(r.case, r.op, r.compared, err, f"{r.pct_off:.3f}",
                      "[green]yes[/green]" if r.passed else "[red]NO[/red]")
    console.print(table)
    failed = [r.case for r in results if not r.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} cases failed: {', '.join(failed)}[/red]", soft_wrap=True)
    else:
        console.print(f"[green]all {len(results)} cases pass[/green] (uint8: <= {U8_MAX_FRACTION:.1%} of pixels "
                      f"off by > {U8_TOLERANCE}; float: max error <= {FLOAT_TOLERANCE:g}; wire JPEG: bytes)")


def check_main(reference_dir: str | Path, console) -> int:
    """`roadwork challenge check`: 0 when every case passes, 1 on any failure, 2 on unusable references."""
    try:
        results = run_reference_check(reference_dir)
    except (FileNotFoundError, ValueError, KeyError) as e:
        console.print(f"[red]{e}[/red]", soft_wrap=True)
        return 2
    render(results, console)
    return 0 if all(r.passed for r in results) else 1
