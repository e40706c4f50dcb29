"""Vision-language tiers: ask a yes/no question, read P(yes) from the next-token distribution.

kind `vlm`: in-process transformers `AutoModelForImageTextToText` + `AutoProcessor` with the
model's chat template (Qwen2.5-VL, Qwen3-VL, SmolVLM / Idefics3, LLaVA-class ...).
kind `remote_vlm`: an OpenAI-compatible server (vLLM, SGLang, or the test server `tests/openai_vlm.py`)
asked with `max_tokens=1, logprobs=True, top_logprobs=K`; the image travels as a data URL.

Both read the answer from log-probabilities, never from parsed text: the feature is
    z = logsumexp(logp[yes variants]) - logsumexp(logp[no variants])
and P(yes) = sigmoid(z), i.e. P(yes | the answer is yes or no). An optional Platt calibrator
(options.calibrator, or roadwork_calibrator.json beside a local model) maps z to P(roadwork).

Options (`VLMOptions`, `RemoteVLMOptions` in roadwork.tiers.kinds, with their defaults): question,
system, yes_tokens, no_tokens, calibrator; remote only: base_url, api_key_env, timeout_s, concurrency,
top_logprobs, jpeg_quality, max_side.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from roadwork.config import TierConfig
from roadwork.metrics import sigmoid
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.tiers.calibrator import FeatureTier, load_calibrator
from roadwork.tiers.kinds import RemoteVLMOptions, VLMOptions

log = logging.getLogger(__name__)

def chat_messages(question: str, system: str | None = None, image_part: dict[str, Any] | None = None) -> list[dict]:
    """One user turn: the image, then the question (the order VLM chat templates are trained on)."""
    msgs: list[dict[str, Any]] = []
    if system:
        msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
    msgs.append({"role": "user", "content": [image_part or {"type": "image"}, {"type": "text", "text": question}]})
    return msgs


def yes_no_logit(logprobs: Iterable[tuple[str, float]]) -> float | None:
    """z from a top-k list of (token text, logprob). A side missing from the list is bounded by the
    smallest logprob shown (its true value is at most that), which pulls z toward 0, never past it.
    None when neither side appears."""
    yes, no, floor = [], [], math.inf
    for tok, lp in logprobs:
        floor = min(floor, lp)
        word = tok.strip().lower()
        if word == "yes":
            yes.append(lp)
        elif word == "no":
            no.append(lp)
    if not yes and not no:
        return None
    lse = lambda v: float(np.logaddexp.reduce(np.asarray(v, dtype=np.float64)))  # noqa: E731
    return (lse(yes) if yes else floor) - (lse(no) if no else floor)


class VLMTier(FeatureTier):
    kind = "vlm"
    feature_names = ["yes_no_logit"]

    default_cost = 100.0

    def __init__(self, cfg: TierConfig, options: VLMOptions):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.configure(cfg.name, cfg.batch_size, cfg.cost)
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.question = options.question
        self.system = options.system
        self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # the next token must sit at the last position of every row of a batch
        self.tokenizer.padding_side = "left"
        self.yes_ids = self._token_ids(options.yes_tokens, "yes_tokens", cfg.name)
        self.no_ids = self._token_ids(options.no_tokens, "no_tokens", cfg.name)
        self.calibrator = load_calibrator(options.calibrator, cfg.model, cfg.name)

    @classmethod
    def build(cls, cfg: TierConfig, options: VLMOptions) -> "VLMTier":
        return cls(cfg, options)

    def _token_ids(self, variants: Sequence[str], field: str, tier: str) -> list[int]:
        ids: list[int] = []
        for v in variants:
            enc = self.tokenizer.encode(v, add_special_tokens=False)
            if len(enc) == 1 and enc[0] != self.tokenizer.unk_token_id and enc[0] not in ids:
                ids.append(int(enc[0]))
        if not ids:
            raise ValueError(f"tier '{tier}': none of options.{field} {list(variants)} is a single token of this tokenizer")
        return ids

    def next_token_logprobs(self, images: Sequence[Image.Image], question: str | None = None,
                            system: str | None = None) -> torch.Tensor:
        """(N, vocab) log-probabilities of the first answer token, one row per image."""
        q = self.question if question is None else question
        sys_prompt = self.system if system is None else system
        text = self.processor.apply_chat_template(chat_messages(q, sys_prompt), add_generation_prompt=True,
                                                  tokenize=False)
        rows = [self._logprobs(c, text) for c in self.chunks(images)]
        return torch.cat(rows) if rows else torch.zeros(0, 0)

    @torch.inference_mode()
    def _logprobs(self, images: list[Image.Image], text: str) -> torch.Tensor:
        enc = self.processor(text=[text] * len(images), images=[[im] for im in images], return_tensors="pt",
                             padding=True)
        enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in enc.items()}
        logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        return torch.log_softmax(logits, dim=-1).cpu()

    def features_batch(self, images: list[Image.Image]) -> np.ndarray:
        lp = self.next_token_logprobs(images).double()
        z = torch.logsumexp(lp[:, self.yes_ids], dim=1) - torch.logsumexp(lp[:, self.no_ids], dim=1)
        return z.numpy()[:, None]

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x[:, 0])


class RemoteVLMTier(FeatureTier):
    """The same question asked of an OpenAI-compatible server; one request per image, sent
    concurrently so that the server (vLLM/SGLang) batches them."""

    kind = "remote_vlm"
    feature_names = ["yes_no_logit"]

    default_cost = 150.0

    def __init__(self, cfg: TierConfig, options: RemoteVLMOptions):
        import httpx

        self.configure(cfg.name, cfg.batch_size, cfg.cost)
        self.model_name = cfg.model
        self.url = str(options.base_url).rstrip("/") + "/chat/completions"
        self.question = options.question
        self.system = options.system
        self.top_logprobs = options.top_logprobs
        self.jpeg_quality = options.jpeg_quality
        self.max_side = options.max_side
        self.concurrency = options.concurrency
        key = os.environ.get(options.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=options.timeout_s, headers=headers)
        self.calibrator = load_calibrator(options.calibrator, "", cfg.name) if options.calibrator else None

    @classmethod
    def build(cls, cfg: TierConfig, options: RemoteVLMOptions) -> "RemoteVLMTier":
        return cls(cfg, options)

    def _data_url(self, im: Image.Image) -> str:
        im = im.convert("RGB")
        if self.max_side and max(im.size) > int(self.max_side):
            im = im.copy()
            im.thumbnail((int(self.max_side), int(self.max_side)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=self.jpeg_quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def request_body(self, im: Image.Image) -> dict[str, Any]:
        part = {"type": "image_url", "image_url": {"url": self._data_url(im)}}
        return {"model": self.model_name, "messages": chat_messages(self.question, self.system, part),
                "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs}

    def _ask(self, im: Image.Image) -> float:
        r = self.client.post(self.url, json=self.request_body(im))
        if r.status_code != 200:
            raise RuntimeError(f"tier '{self.name}': {self.url} answered HTTP {r.status_code}: {r.text[:300]}")
        try:
            first = r.json()["choices"][0]["logprobs"]["content"][0]
            top = [(t["token"], float(t["logprob"])) for t in first["top_logprobs"]]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise RuntimeError(f"tier '{self.name}': {self.url} sent no top logprobs ({e}); "
                               "is logprobs supported by this server?") from None
        z = yes_no_logit(top)
        if z is None:
            # NaN, not logit 0: a calibrator would map 0 to sigmoid(intercept), not to 0.5; the
            # tier's probability turns NaN into exactly 0.5 after any calibrator (clean_probs)
            log.warning("tier %s: neither yes nor no among the top %d tokens %s; answering 0.5", self.name,
                        len(top), [t for t, _ in top[:5]])
            return math.nan
        return z

    def features_batch(self, images: list[Image.Image]) -> np.ndarray:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(images)))) as pool:
            z = list(pool.map(self._ask, images))
        return np.asarray(z, dtype=np.float64)[:, None]

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x[:, 0])

    @property
    def warmup_size(self) -> tuple[int, int]:  # a remote server warms itself; one cheap request checks it is there
        return (64, 64)
