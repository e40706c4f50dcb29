"""The SN72 validator's challenge versions: the one place that says what each version sends.

Every `--protocol` flag (challenge make, eval, train), the simulator (`sim.make_challenge`), the
reference check and `roadwork doctor` read this table. Pure Python on purpose: the CLI imports it to
build its flags, and that must not pull in torch.

    2026-01  release 2.0.4 (28a1755): levels 0-3 with centre crop (L0) / rotation + RandomResizedCrop (L1-3)
    2026-04  e02ce2c: the whole frame letterboxed into 224x224 at every level, then rotation + distortions
    2026-05  81517f8 / cc3e0b9 .. ba068aa: no augmentation, the image at its native size as JPEG q75

On 2026-05-06 (05b830e, "burn rewards") the subnet's code halted: `forward()` returns before sampling,
so validators send no challenges at all. The default is the latest version that still sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Protocol:
    """What one validator version does to an image before it reaches the miner."""

    name: str
    commits: str
    # crop: L0 centre square crop + resize, L1-3 rotate then RandomResizedCrop (2026-01)
    # letterbox: every level letterboxes the whole frame into 224x224; L1-3 rotate that tensor (2026-04)
    # native: no augmentation; the image goes out at its own size (2026-05)
    geometry: Literal["crop", "letterbox", "native"]
    # A JPEG held in the dataset parquet is re-saved at q75 when the validator fills its cache, so a real
    # image is encoded twice. Every version does it, but it only survives where nothing resizes afterwards;
    # the 2026-01/04 simulator leaves it out so their numbers stay comparable with earlier runs.
    reencode_jpeg_sources: bool
    summary: str

    @property
    def augmented(self) -> bool:
        """True when the validator draws an augmentation level (0-3) for each image."""
        return self.geometry != "native"

    @property
    def wire_size(self) -> str:
        return "native resolution" if self.geometry == "native" else "224x224"


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("2026-01", "28a1755 (release 2.0.4, 2026-01-06)", "crop", False,
             "levels 0-3: centre crop (L0) or rotation + RandomResizedCrop (L1-3), distortions, 224x224 JPEG q75"),
    Protocol("2026-04", "e02ce2c (2026-04-06)", "letterbox", False,
             "levels 0-3: whole frame letterboxed into 224x224, rotation + distortions on it, JPEG q75"),
    Protocol("2026-05", "81517f8 / cc3e0b9 .. ba068aa (2026-05-03 to the halt)", "native", True,
             "no augmentation: the image at its native resolution, JPEG q75 (dataset JPEGs encoded twice)"),
)}
DEFAULT_PROTOCOL = "2026-05"  # the latest version that sends challenges (the halt sends none)
HALTED_SINCE = "2026-05-06"   # 05b830e: forward() returns at once, validators burn emissions
SUBNET_STATUS = (f"SN72 has been halted in the subnet's code since {HALTED_SINCE} (commit 05b830e): validators "
                 "send no challenges and set all weight to the owner (burn); registering now earns nothing")


def get_protocol(name: str | Protocol | None = None) -> Protocol:
    """The protocol called `name` (None: the default); a ValueError names the known ones."""
    if isinstance(name, Protocol):
        return name
    if name is None:
        name = DEFAULT_PROTOCOL
    try:
        return PROTOCOLS[str(name)]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})") from None


def is_jpeg_path(path: object) -> bool:
    """A file the validator's cache would hold as a JPEG, and so re-encode at q75 when filling it."""
    return str(path).lower().endswith((".jpg", ".jpeg"))


def protocol_help() -> str:
    """One line for a `--protocol` flag's help."""
    return f"Validator version: {' | '.join(PROTOCOLS)} (default {DEFAULT_PROTOCOL}; see `roadwork challenge versions`)."
