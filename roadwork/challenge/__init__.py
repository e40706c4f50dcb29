"""The SN72 challenge simulator: the validator's augmentation levels 0-3 and JPEG q75, reproduced exactly.

    ch = make_challenge(img, np.random.default_rng(0))   # ch.image: what the miner decodes
    tf = ChallengeTransform(seed=0)                      # PIL -> PIL, for training pipelines
    run_reference_check("../shared/docs/challenge_reference")
"""

from roadwork.challenge.ops import CODES, PARAMS, jpeg_bytes, level0, rotate_resized_crop
from roadwork.challenge.reference import CaseResult, run_reference_check
from roadwork.challenge.sim import Challenge, ChallengeTransform, augment, draw_level, make_challenge, to_wire

__all__ = [
    "CODES", "PARAMS", "CaseResult", "Challenge", "ChallengeTransform", "augment", "draw_level", "jpeg_bytes",
    "level0", "make_challenge", "rotate_resized_crop", "run_reference_check", "to_wire",
]
