"""A minimal OpenAI-compatible chat-completions server around an in-process VLM tier.

It answers exactly what the `remote_vlm` tier asks (one image + one question, `max_tokens=1`,
`logprobs`, `top_logprobs`) from the model's next-token log-probabilities, so the remote path can
be exercised end to end without vLLM or SGLang (which need a GPU). For production serving use
vLLM or SGLang; this server processes one request at a time on the device it is given.

    python tests/openai_vlm.py --model Qwen/Qwen2.5-VL-3B-Instruct --port 8001
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from roadwork.config import TierConfig
from roadwork.decode import ImageError, decode_base64


def _parse(body: dict[str, Any]) -> tuple[list[Any], str, str | None]:
    """(images, question, system) from a chat-completions body; the last user turn carries them."""
    images, texts, system = [], [], None
    for msg in body.get("messages") or []:
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
        if msg.get("role") == "system":
            system = " ".join(p.get("text", "") for p in parts if p.get("type") == "text") or None
            continue
        if msg.get("role") != "user":
            continue
        for p in parts:
            if p.get("type") == "text":
                texts.append(p.get("text", ""))
            elif p.get("type") == "image_url":
                url = (p.get("image_url") or {}).get("url", "")
                if not url.startswith("data:"):
                    raise ValueError("only data: image URLs are accepted (this server fetches nothing)")
                images.append(decode_base64(url.split(",", 1)[-1], source="image_url"))
    if len(images) != 1:
        raise ValueError(f"expected exactly one image, got {len(images)}")
    return images, " ".join(texts), system


def create_app(tier: Any, served_name: str):
    """FastAPI app serving `tier` (a roadwork VLMTier) under the model name `served_name`."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="roadwork OpenAI-compatible VLM")
    lock = threading.Lock()  # one forward at a time: the tier's model is not re-entrant
    tok = tier.tokenizer

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "roadwork"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("model") not in (None, served_name):
            raise HTTPException(404, f"model {body.get('model')!r} is not served here (serving {served_name!r})")
        try:
            images, question, system = _parse(body)
        except (ValueError, ImageError) as e:
            raise HTTPException(400, str(e)) from None
        k = max(0, min(int(body.get("top_logprobs") or 0), 64))
        with lock:
            lp = tier.next_token_logprobs(images, question=question, system=system)[0]
        best = int(lp.argmax())
        top = lp.topk(min(max(k, 1), lp.numel()))

        def entry(i: int, v: float) -> dict[str, Any]:
            t = tok.decode([i])
            return {"token": t, "logprob": float(v), "bytes": list(t.encode())}

        logprobs = None
        if body.get("logprobs"):
            content = entry(best, float(lp[best]))
            content["top_logprobs"] = [entry(int(i), float(v)) for v, i in zip(top.values, top.indices)][:k]
            logprobs = {"content": [content]}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": tok.decode([best])},
                         "logprobs": logprobs, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }

    return app


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    from roadwork.tiers import create_tier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default=None, help="served model name (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    tier = create_tier(TierConfig(name="vlm", kind="vlm", model=a.model, device=a.device, batch_size=1))
    uvicorn.run(create_app(tier, a.name or a.model), host=a.host, port=a.port)


if __name__ == "__main__":  # pragma: no cover
    main()
