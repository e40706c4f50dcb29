"""Check the simulator against reference outputs of the validator's own code (`challenge_reference/`).

Two index files, both required: `cases.json` (2026-01, release 2.0.4) and `cases_2026.json` (2026-04 and
2026-05). Pass rule, the same in both READMEs: a uint8 case fails when more than 0.1% of its pixels differ
by more than one grey level (in any channel); a float case fails when any value is off by more than 1e-4;
a wire JPEG must be byte-identical, or else its decoded pixels must pass the uint8 rule (the result says
which was compared).

The 2026-04 level cases were made after `random.seed(s); np.random.seed(s); torch.manual_seed(s)`. We
replay those three generators privately (no global state touched), check that they give the recorded
angle and distortion strengths, and then run our pipeline with them: so a case checks the validator's
RNG order as well as its pixels.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from roadwork.challenge import ops
from roadwork.challenge.protocols import get_protocol

INDEX_FILES = ("cases.json", "cases_2026.json")
U8_MAX_FRACTION = 0.001  # of pixels allowed to differ by more than U8_TOLERANCE
U8_TOLERANCE = 1
FLOAT_TOLERANCE = 1e-4


@dataclass
class CaseResult:
    case: str          # the output file's stem, e.g. "boston_9s__CS1"
    op: str            # level0, CS, CC, JPEG, GNC, GB, rotate+resized_crop, wire_jpeg, letterbox, level1-3, ...
    compared: str      # "uint8", "float32", "bytes" (wire falls back to "decoded uint8"), "draws" (RNG replay)
    max_error: float   # grey levels for uint8, absolute for float, 0/1 for bytes
    pct_off: float     # % of pixels (float: values) beyond the tolerance
    passed: bool
    version: str = "2026-01"


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


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def _compare_pixels(name: str, op: str, ours_u8: np.ndarray, out: Path) -> CaseResult:
    """Our uint8 HWC RGB against a reference PNG (uint8) or .npy (float32 CHW, the validator's tensor)."""
    if out.suffix == ".npy":
        ours = ops._U8_TO_F32[np.ascontiguousarray(ours_u8.transpose(2, 0, 1))]
        return CaseResult(name, op, "float32", *compare_float(ours, np.load(out)))
    return CaseResult(name, op, "uint8", *compare_u8(ours_u8, _rgb(out)))


def _compare_wire(name: str, op: str, ours: bytes, out: Path) -> CaseResult:
    ref = out.read_bytes()
    if ours == ref:
        return CaseResult(name, op, "bytes", 0.0, 0.0, True)
    decoded = np.asarray(Image.open(BytesIO(ours)).convert("RGB"))
    return CaseResult(name, op, "decoded uint8", *compare_u8(decoded, _rgb(out)))


def validator_draws(seed: int, level: int) -> tuple[float, dict[str, int], ops.Noise]:
    """The validator's draws inside `apply_augmentation_by_level` after seeding all three generators with
    `seed`: numpy's level draw, torch's angle (float32), Python's `randint` per distortion, then numpy's
    GNC noise. Private generators with the same seeds give the same numbers as the global ones."""
    from roadwork.challenge.sim import LEVEL_DISTORTIONS

    import torch

    py, legacy = random.Random(seed), np.random.RandomState(seed)
    legacy.random()  # np.random.random() picks the level, even when level_probs leaves one choice
    angle = float(torch.empty(1).uniform_(-20, 20, generator=torch.Generator().manual_seed(seed)).item())
    codes, top = LEVEL_DISTORTIONS[level]
    strengths = {c: py.randint(0, top) for c in codes}
    return angle, {c: strengths.get(c, 0) for c in ops.CODES}, lambda shape: legacy.randn(*shape)


class _Runner:
    """Runs the cases of one index file; keeps our outputs so `from_case` wire cases encode *our* pixels."""

    def __init__(self, root: Path, index: Path):
        self.root, self.index = root, index
        self.ours: dict[str, np.ndarray | Image.Image] = {}

    def file(self, rel: str) -> Path:
        p = self.root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{p}: reference file named in {self.index} is missing")
        return p

    def run(self, case: dict) -> CaseResult:
        op = case["op"]
        version = str(case.get("version", "2026-01"))
        get_protocol(version)  # an unknown version is a ValueError naming the known ones
        src, out = self.file(case["input"]), self.file(case["output"])
        result = self._run(case, op, version, src, out, out.stem)
        result.version = version
        return result

    def _run(self, case: dict, op: str, version: str, src: Path, out: Path, name: str) -> CaseResult:
        from roadwork.challenge.sim import LEVEL_DISTORTIONS, apply_level, make_challenge

        if op == "level0":
            return CaseResult(name, op, "uint8", *compare_u8(np.asarray(ops.level0(_open(src))), _rgb(out)))
        if op in ops.PARAMS:
            strength = int(case["strength"])
            if "param" in case and not np.isclose(float(case["param"]), ops.param(op, strength)):
                raise ValueError(f"{name}: {self.index.name} gives {op} strength {strength} param {case['param']}, "
                                 f"ours is {ops.param(op, strength)}")
            noise = _gnc_noise(int(case["numpy_seed"])) if op == "GNC" else None
            bgr = ops.distort(_rgb(src)[:, :, ::-1], op, strength, noise)
            return CaseResult(name, op, "uint8", *compare_u8(bgr[:, :, ::-1], _rgb(out)))
        if op == "rotate+resized_crop":
            ours = ops.rotate_resized_crop(_open(src), float(case["angle_deg"]),
                                           tuple(case["crop_top_left_height_width"]))
            return CaseResult(name, op, "float32", *compare_float(ours, np.load(out)))
        if op == "letterbox":
            u8 = np.asarray(ops.letterbox(_open(src)))
            self.ours[case["output"]] = u8
            return _compare_pixels(name, op, u8, out)
        if op in ("level1", "level2", "level3"):
            level = int(op[-1])
            seed = int(case["seeds"]["numpy"])
            if len(set(case["seeds"].values())) != 1:
                raise ValueError(f"{name}: expected one seed for python/numpy/torch, got {case['seeds']}")
            angle, strengths, noise = validator_draws(seed, level)
            recorded = {d["type"]: int(d["level"]) for d in case["distortions"]}
            drawn = {c: strengths[c] for c in LEVEL_DISTORTIONS[level][0]}
            if np.float32(angle) != np.float32(case["angle_deg"]) or recorded != drawn:
                return CaseResult(name, op, "draws", abs(angle - float(case["angle_deg"])), 100.0, False)
            u8 = apply_level(_open(src), version, level, angle, None, strengths, noise)
            self.ours[case["output"]] = u8
            return _compare_pixels(name, op, u8, out)
        if op == "wire_jpeg":  # 2026-01: a level-0 image; 2026-04: the pixels of an earlier case
            sent = self.ours.get(case.get("from_case", ""))
            if sent is None:
                sent = ops.level0(_open(src))
            return _compare_wire(name, op, ops.jpeg_bytes(Image.fromarray(np.asarray(sent), "RGB")), out)
        if op == "cache_extract_jpeg":
            extracted = ops.jpeg_bytes(_open(src))
            self.ours[case["output"]] = extracted
            return _compare_wire(name, op, extracted, out)
        if op == "wire_jpeg_native":  # through our simulator: make_challenge at native size
            img = _open(src)
            if "api" in str(case.get("path", "")):
                img = img.convert("RGB")  # fetch_api_challenge: .convert('RGB'), alpha dropped (not composited)
            # from_case: a dataset JPEG, re-encoded when the cache was filled, then encoded again on the wire
            ch = make_challenge(img, np.random.default_rng(0), protocol=version, from_jpeg="from_case" in case)
            return _compare_wire(name, op, ch.jpeg, out)
        raise ValueError(f"{name}: unknown op {op!r} in {self.index}")


def run_case(case: dict, root: Path) -> CaseResult:
    """One case of `cases.json` (2026-01) on its own."""
    return _Runner(root, root / "cases.json").run(case)


def _cases(index: Path) -> list[dict]:
    if not index.is_file():
        raise FileNotFoundError(f"{index}: missing from the reference folder (need {' and '.join(INDEX_FILES)})")
    try:
        return json.loads(index.read_text())["cases"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a reference index with a 'cases' list ({e})") from None


def run_reference_check(reference_dir: str | Path) -> list[CaseResult]:
    """Run every case of `cases.json` and `cases_2026.json` in `reference_dir`, in file order; a missing
    index or reference file raises FileNotFoundError naming it."""
    root = Path(reference_dir)
    results: list[CaseResult] = []
    for name in INDEX_FILES:
        index = root / name
        runner = _Runner(root, index)
        results += [runner.run(c) for c in _cases(index)]
    return results


def render(results: list[CaseResult], console) -> None:
    """A rich table of the results and a one-line verdict."""
    from rich.table import Table

    table = Table(title="SN72 challenge simulator vs validator reference")
    for col, just in [("version", "left"), ("case", "left"), ("op", "left"), ("compared", "left"), ("max error", "right"),
                      ("% pixels off", "right"), ("pass", "center")]:
        table.add_column(col, justify=just)
    for r in results:
        err = f"{r.max_error:.2e}" if r.compared == "float32" else f"{r.max_error:g}"
        table.add_row(r.version, r.case, r.op, r.compared, err, f"{r.pct_off:.3f}",
                      "[green]yes[/green]" if r.passed else "[red]NO[/red]")
    console.print(table)
    failed = [r.case for r in results if not r.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} cases failed: {', '.join(failed)}[/red]", soft_wrap=True)
    else:
        versions = ", ".join(sorted({r.version for r in results}))
        console.print(f"[green]all {len(results)} cases pass[/green] ({versions}; uint8: <= {U8_MAX_FRACTION:.1%} of pixels "
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
