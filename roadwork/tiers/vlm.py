"""Vision-language tiers: ask a yes/no question, read P(yes) from the next-token distribution.

kind `vlm`: in-process transformers `AutoModelForImageTextToText` + `AutoProcessor` with the
model's chat template (Qwen2.5-VL, Qwen3-VL, SmolVLM / Idefics3, LLaVA-class ...).
kind `remote_vlm`: an OpenAI-compatible server (vLLM, SGLang, or the test server `tests/openai_vlm.py`)
asked with `max_tokens=1, logprobs=True, top_logprobs=K`; the image travels as a data URL.

Both read the answer from log-probabilities, never from parsed text: the feature is
    z = logsumexp(logp[yes variants]) - logsumexp(logp[no variants])
and P(yes) = sigmoid(z), i.e. P(yes | the answer is yes or no). An optional Platt calibrator
(options.calibrator, or roadwork_calibrator.json beside a local model) maps z to P(roadwork).

Options: question, system, yes_tokens, no_tokens, calibrator; remote only: base_url,
api_key_env, timeout_s, concurrency, top_logprobs, jpeg_quality, max_side.
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
from roadwork.tiers import register_tier
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.metrics import sigmoid
from roadwork.tiers.calibrator import FeatureTier, load_calibrator

log = logging.getLogger(__name__)

DEFAULT_QUESTION = ("Is there roadwork in this image: a work zone with traffic cones, barrels, barriers, "
                    "work signs, workers, construction machines or excavation on or beside the road? "
                    "Answer with yes or no only.")
YES = ["yes", "Yes", "YES", " yes", " Yes"]
NO = ["no", "No", "NO", " no", " No"]
_COMMON = {"question", "system", "yes_tokens", "no_tokens", "calibrator"}
_REMOTE = {"base_url", "api_key_env", "timeout_s", "concurrency", "top_logprobs", "jpeg_quality", "max_side"}


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


def _check_options(cfg: TierConfig, allowed: set[str]) -> dict[str, Any]:
    unknown = set(cfg.options) - allowed
    if unknown:
        raise ValueError(f"tier '{cfg.name}': unknown {cfg.kind} option(s) {sorted(unknown)} (known: {sorted(allowed)})")
    return dict(cfg.options)


class VLMTier(FeatureTier):
    kind = "vlm"
    feature_names = ["yes_no_logit"]

    def __init__(self, cfg: TierConfig):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        opts = _check_options(cfg, _COMMON)
        self.name = cfg.name
        self.cost = cfg.cost if cfg.cost is not None else 100.0
        self.batch_size = cfg.batch_size
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.question = str(opts.get("question", DEFAULT_QUESTION))
        self.system = opts.get("system")
        self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # the next token must sit at the last position of every row of a batch
        self.tokenizer.padding_side = "left"
        self.yes_ids = self._token_ids(opts.get("yes_tokens", YES), "yes_tokens", cfg.name)
        self.no_ids = self._token_ids(opts.get("no_tokens", NO), "no_tokens", cfg.name)
        self.calibrator = load_calibrator(opts.get("calibrator"), cfg.model, cfg.name)

    def _token_ids(self, variants: Sequence[str], field: str, tier: str) -> list[int]:
        ids: list[int] = []
        for v in variants:
            enc = self.tokenizer.encode(v, add_special_tokens=False)
            if len(enc) == 1 and enc[0] != self.tokenizer.unk_token_id and enc[0] not in ids:
                ids.append(int(enc[0]))
        if not ids:
            raise ValueError(f"tier '{tier}': none of options.{field} {list(variants)} is a single token of this tokenizer")
        return ids

    @torch.inference_mode()
    def next_token_logprobs(self, images: Sequence[Image.Image], question: str | None = None,
                            system: str | None = None) -> torch.Tensor:
        """(N, vocab) log-probabilities of the first answer token, one row per image."""
        q = self.question if question is None else question
        sys_prompt = self.system if system is None else system
        text = self.processor.apply_chat_template(chat_messages(q, sys_prompt), add_generation_prompt=True,
                                                  tokenize=False)
        rows: list[torch.Tensor] = []
        for s in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[s:s + self.batch_size]]
            enc = self.processor(text=[text] * len(chunk), images=[[im] for im in chunk], return_tensors="pt",
                                 padding=True)
            enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                   for k, v in enc.items()}
            logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
            rows.append(torch.log_softmax(logits, dim=-1).cpu())
        return torch.cat(rows) if rows else torch.zeros(0, 0)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
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

    def __init__(self, cfg: TierConfig):
        import httpx

        opts = _check_options(cfg, _COMMON | _REMOTE)
        if not opts.get("base_url"):
            raise ValueError(f"tier '{cfg.name}': remote_vlm needs options.base_url (e.g. http://127.0.0.1:8000/v1)")
        self.name = cfg.name
        self.cost = cfg.cost if cfg.cost is not None else 150.0
        self.model_name = cfg.model
        self.url = str(opts["base_url"]).rstrip("/") + "/chat/completions"
        self.question = str(opts.get("question", DEFAULT_QUESTION))
        self.system = opts.get("system")
        self.top_logprobs = int(opts.get("top_logprobs", 20))
        self.jpeg_quality = int(opts.get("jpeg_quality", 90))
        self.max_side = opts.get("max_side")
        self.concurrency = int(opts.get("concurrency", 8))
        key = os.environ.get(str(opts.get("api_key_env", "ROADWORK_VLM_API_KEY")))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=float(opts.get("timeout_s", 30.0)), headers=headers)
        self.calibrator = load_calibrator(opts.get("calibrator"), "", cfg.name) if opts.get("calibrator") else None

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

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, 1))
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(images)))) as pool:
            z = list(pool.map(self._ask, images))
        return np.asarray(z, dtype=np.float64)[:, None]

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x[:, 0])

    def warmup(self) -> None:  # a remote server warms itself; one cheap request checks it is there
        self.predict([Image.new("RGB", (64, 64))])


@register_tier("vlm")
def _build(cfg: TierConfig) -> VLMTier:
    return VLMTier(cfg)


@register_tier("remote_vlm")
def _build_remote(cfg: TierConfig) -> RemoteVLMTier:
    return RemoteVLMTier(cfg)
