"""roadwork: does this street image show roadwork? A calibrated cascade and an SN72 miner."""

__version__ = "0.1.0"
