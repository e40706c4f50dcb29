"""The SN72 wire format, defined field for field as natixnetwork/streetvision-subnet defines it
(natix/protocol.py). Bittensor routes requests on the class name (`POST /ImageSynapse`), so the
names, types and defaults here are the protocol; do not rename or "improve" them.

Newer subnet releases have validators send `ExtendedImageSynapse` (a subclass adding `model_url`
and `explanation`, routed as `POST /ExtendedImageSynapse`); the miner serves both routes so it
answers whichever one a validator speaks.
"""

import functools

import bittensor as bt
import pydantic


class ImageSynapse(bt.Synapse):
    """One challenge: a base64 JPEG in, the probability of roadwork out."""

    testnet_label: int = -1  # ground truth, filled by validators on testnet only

    # Request input, filled by the validator's dendrite.
    image: str = pydantic.Field(title="Image", description="A base64 encoded image", default="", frozen=False)

    # Response output, filled by the miner's axon.
    prediction: float = pydantic.Field(
        title="Prediction",
        description="Probability that the image is AI generated/modified",  # sic: the subnet's text
        default=-1.0,
        frozen=False,
    )

    def deserialize(self) -> float:
        return self.prediction

    # Not part of the wire format: bittensor's `Synapse.to_headers` rebuilds the JSON schema once per
    # field (~70 ms per message on this CPU) to find required fields. The answer never changes for a
    # class, so compute it once; the headers produced are identical.
    @classmethod
    @functools.cache
    def _required_fields(cls) -> tuple[str, ...]:
        return tuple(cls.model_json_schema().get("required", []))

    def get_required_fields(self) -> list[str]:
        return list(self._required_fields())


class ExtendedImageSynapse(ImageSynapse):
    """The subclass newer validators send; the miner may report where its model is published."""

    model_url: str = ""
    explanation: str = pydantic.Field(
        title="Explanation",
        description="Textual explanation of visual indicators for roadwork detection.",
        default="",
        frozen=False,
    )


SYNAPSES = (ImageSynapse, ExtendedImageSynapse)
