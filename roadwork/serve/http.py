"""`roadwork serve`: the engine behind a small HTTP API (FastAPI on uvicorn).

    POST /v1/predict   JSON {"images": [<base64>, ...]} or multipart file uploads
    GET  /healthz      the process answers
    GET  /readyz       the model is loaded and warmed up (503 before, and while shutting down)
    GET  /metrics      Prometheus text format
    GET  /openapi.json, /docs
    GET  /review/      with --capture: the review page for the captured images (roadwork.review)

Answers are cached by the SHA-256 of the image (`serve.cache_size`, roadwork.serve.cache): miners that
share this server (`roadwork mine --engine-url`) get the validator's one image for one engine call.

Bad input is the caller's to fix, so it gets a 4xx naming it: if any image of a request cannot be
decoded the whole request is refused with 422 and an `errors` list of {index, input, reason} for
every bad image (no partial answers: a client never has to match partial results to inputs).
Other refusals: 400 malformed JSON, 401 missing/wrong API key, 413 too many images or bytes,
415 unsupported content type, 503 not accepting work, 504 deadline passed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field, ValidationError

from roadwork.config import Config, load_config, shell_config
from roadwork.decode import ImageError, decode_base64, decode_bytes
from roadwork.engine import Engine
from roadwork.fast.encoded import Encoded, as_image
from roadwork.serve.answers import DeadlineExceeded, ShuttingDown
from roadwork.serve.batcher import Batcher
from roadwork.serve.cache import AnswerCache, image_key
from roadwork.serve.capture import Capture
from roadwork.serve.docs import mount_offline_docs
from roadwork.serve.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)
API_KEY_HEADER = "X-API-Key"


# ---- schemas (published in the OpenAPI document) ------------------------------------------------
class PredictRequest(BaseModel):
    images: list[str] = Field(..., min_length=1, description="Base64-encoded images (JPEG, PNG, ...); "
                              "data URLs are accepted.")


class ImageResult(BaseModel):
    index: int = Field(..., description="Position of the image in the request.")
    prob: float = Field(..., ge=0, le=1, description="Calibrated probability that the image shows roadwork.")
    label: int = Field(..., description="1 = roadwork, 0 = none (prob > the model's threshold).")
    label_name: str = Field(..., description='"roadwork" or "none".')
    tier: str = Field(..., description="The cascade tier (or stacker) that decided.")
    timed_out: bool = Field(..., description="True if the deadline stopped the cascade early.")
    latency_ms: float = Field(..., description="From request receipt to this image's answer.")


class PredictResponse(BaseModel):
    results: list[ImageResult]
    latency_ms: float


class ErrorItem(BaseModel):
    index: int
    input: str
    reason: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)


class _Refuse(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None, reason: str = ""):
        self.status, self.detail, self.errors = status, detail, errors or []
        self.reason = reason or str(status)


_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}}
_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in {
    400: "malformed JSON body", 401: "missing or wrong API key", 413: "too many images or bytes",
    415: "unsupported content type", 422: "an image could not be decoded (every bad index is listed)",
    503: "not ready or shutting down", 504: "no answer before the deadline"}.items()}


# ---- the app ------------------------------------------------------------------------------------
def create_app(engine: Engine, cfg: Config | None = None, batcher: Batcher | None = None,
               capture: Capture | None = None) -> FastAPI:
    """The HTTP app. It starts (and on shutdown drains) its own batcher unless one is given."""
    cfg = cfg or load_config()
    sc = cfg.serve
    owns_batcher = batcher is None
    batcher = batcher or Batcher(engine, sc.max_batch_size, sc.max_wait_ms, sc.deadline_s)
    metrics: Metrics = batcher.metrics
    cache = AnswerCache(sc.cache_size, metrics.registry)
    if capture is None and cfg.capture.enabled:
        capture = Capture(cfg.capture)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owns_batcher:
            batcher.start(warmup=sc.warmup)
        yield
        # uvicorn has already let in-flight requests finish; drain anything left, then stop.
        if owns_batcher:
            await run_in_threadpool(batcher.stop)
        if capture is not None:
            capture.close()

    app = FastAPI(title="roadwork", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Probability that a street image shows roadwork (NATIX StreetVision, SN72).")
    mount_offline_docs(app)
    app.state.batcher, app.state.metrics, app.state.capture, app.state.cache = batcher, metrics, capture, cache
    if capture is not None:  # label what was captured, on the same server (roadwork.review)
        from roadwork.review import create_review_app
        from roadwork.review.overlay import engine_overlay

        app.mount("/review", create_review_app(capture.root, sc.api_key, overlay=engine_overlay(engine),
                                               before_read=capture.flush))
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Required when the server was started with an API key.")

    async def require_key(request: Request, key: str | None = Depends(key_header)) -> None:
        if sc.api_key is None:
            return
        if key is None:
            auth = request.headers.get("authorization", "")
            key = auth[7:] if auth.lower().startswith("bearer ") else None
        if key is None or not secrets.compare_digest(key.encode(), sc.api_key.encode()):
            metrics.requests.labels("http", "unauthorized").inc()
            raise _Refuse(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)",
                          reason="unauthorized")

    @app.exception_handler(_Refuse)
    async def _refused(_: Request, e: _Refuse) -> JSONResponse:
        metrics.errors.labels("http", e.reason).inc()
        headers = {"WWW-Authenticate": "ApiKey"} if e.status == 401 else None
        return JSONResponse({"detail": e.detail, "errors": e.errors}, status_code=e.status, headers=headers)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: model loaded and warmed up",
             responses={503: {"description": "warming up, warm-up failed, or shutting down"}})
    async def readyz() -> JSONResponse:
        tiers = [t.name for t in engine.tiers]
        if not batcher.accepting:
            return JSONResponse({"status": "shutting down", "tiers": tiers}, status_code=503)
        if batcher.warmup_error:
            return JSONResponse({"status": batcher.warmup_error, "tiers": tiers}, status_code=503)
        if not batcher.ready.is_set():
            return JSONResponse({"status": "warming up", "tiers": tiers}, status_code=503)
        return JSONResponse({"status": "ready", "tiers": tiers})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prom() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra=_REQUEST_BODY,
              summary="Probability of roadwork for each image", dependencies=[Depends(require_key)])
    async def predict(request: Request) -> PredictResponse:
        t0 = time.perf_counter()
        with metrics.latency.labels("http").time():
            inputs = await _read_inputs(request, sc.max_images, sc.max_image_bytes)
            images = await run_in_threadpool(_decode_all, inputs, sc.max_image_bytes, sc.max_pixels,
                                             getattr(engine, "takes_encoded", False))
            deadline = time.monotonic() + sc.deadline_s
            try:
                keys = [image_key(_raw_bytes(raw) or raw.encode()) for _, raw in inputs]  # type: ignore[union-attr]
                futs = cache.futures(keys, lambda idx: batcher.submit([images[i] for i in idx], deadline))
            except ShuttingDown as e:
                raise _Refuse(503, str(e), reason="shutting_down") from None
            done_at = [0.0] * len(futs)
            for i, f in enumerate(futs):
                f.add_done_callback(lambda _f, i=i: done_at.__setitem__(i, time.perf_counter()))
            try:
                results = await batcher.wait(futs, deadline)
            except DeadlineExceeded as e:
                raise _Refuse(504, f"{e} ({sc.deadline_s:g} s)", reason="deadline") from None
            except ShuttingDown as e:
                raise _Refuse(503, str(e), reason="shutting_down") from None
        if capture is not None:
            for (_, raw), im, r in zip(inputs, images, results):
                if capture.wants(r.prob):
                    await run_in_threadpool(capture.save, as_image(im), r.prob, r.label, r.tier, "http",
                                            _raw_bytes(raw))
        metrics.requests.labels("http", "ok").inc()
        metrics.images.labels("http").inc(len(results))
        return PredictResponse(latency_ms=(time.perf_counter() - t0) * 1000.0, results=[
            ImageResult(index=i, prob=r.prob, label=r.label, label_name="roadwork" if r.label else "none",
                        tier=r.tier, timed_out=r.timed_out, latency_ms=(done_at[i] - t0) * 1000.0)
            for i, r in enumerate(results)])

    return app


async def _read_inputs(request: Request, max_images: int, max_bytes: int) -> list[tuple[str, bytes | str]]:
    """(input name, raw payload) per image, from a JSON or multipart body; refuses what it can
    tell is wrong before decoding anything."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # base64 inflates by 4/3; allow some slack for JSON syntax / multipart boundaries.
    limit = max_images * (max_bytes * 4 // 3 + 1024)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _Refuse(413, f"request body of {length} bytes is over the {limit}-byte limit", reason="too_large")
    if ctype == "application/json":
        body = await request.body()
        if len(body) > limit:
            raise _Refuse(413, f"request body of {len(body)} bytes is over the {limit}-byte limit", reason="too_large")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _Refuse(400, f"body is not valid JSON: {e}", reason="bad_json") from None
        try:
            req = PredictRequest.model_validate(payload)
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}" for x in e.errors()[:5])
            raise _Refuse(422, f'expected {{"images": [<base64 string>, ...]}}: {errs}', reason="bad_request") from None
        if len(req.images) > max_images:
            raise _Refuse(413, f"{len(req.images)} images is over the {max_images}-image limit", reason="too_many")
        return [(f"images[{i}]", s) for i, s in enumerate(req.images)]
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=max_images + 1, max_fields=max_images + 16)
        except Exception as e:  # starlette raises its own MultiPartException / assertion text
            raise _Refuse(400, f"malformed multipart body: {e}", reason="bad_multipart") from None
        files = [(name, v) for name, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise _Refuse(422, "multipart body has no file parts (send images as files, e.g. -F files=@a.jpg)",
                          reason="bad_request")
        if len(files) > max_images:
            raise _Refuse(413, f"{len(files)} images is over the {max_images}-image limit", reason="too_many")
        out = []
        for i, (name, f) in enumerate(files):
            out.append((f"{name}[{i}] ({f.filename or 'unnamed'})", await f.read()))
        return out
    raise _Refuse(415, f"unsupported content type {ctype or '(none)'!r}: send application/json "
                  '{"images": [<base64>...]} or multipart/form-data files', reason="bad_content_type")


def _decode_all(inputs: list[tuple[str, bytes | str]], max_bytes: int, max_pixels: int,
                encoded: bool = False) -> list:
    """Every input decoded (or, for an engine that `takes_encoded`, checked from its header and left
    for the engine's batched GPU decode); any bad one refuses the request."""
    images, errors = [], []
    for i, (name, raw) in enumerate(inputs):
        try:
            if encoded:
                make = Encoded.from_base64 if isinstance(raw, str) else Encoded.from_bytes
                images.append(make(raw, name, max_pixels=max_pixels, max_bytes=max_bytes))
            elif isinstance(raw, str):
                images.append(decode_base64(raw, name, max_pixels=max_pixels, max_bytes=max_bytes))
            else:
                images.append(decode_bytes(raw, name, max_pixels=max_pixels, max_bytes=max_bytes))
        except ImageError as e:
            errors.append({"index": i, "input": name, "reason": e.reason})
    if errors:
        raise _Refuse(422, f"{len(errors)} of {len(inputs)} image(s) could not be used; nothing was predicted",
                      errors, reason="bad_image")
    return images


def _raw_bytes(raw: bytes | str) -> bytes | None:
    """The uploaded bytes, for capture; None (capture re-encodes losslessly) for base64 that needed
    the decoder's leniency (data URLs, URL-safe alphabet, missing padding)."""
    if isinstance(raw, bytes):
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("roadwork")
    except Exception:  # pragma: no cover - running from a source tree without install
        return "0"


def run_server(engine: Engine, cfg: Config) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then finishes in-flight requests before the batcher drains."""
    import uvicorn

    app = create_app(engine, cfg)
    # No per-request access log: at load it costs more than the tiny model, and /metrics counts requests.
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.serve.host, port=cfg.serve.port, log_level="info",
                                          access_log=False, timeout_graceful_shutdown=int(cfg.serve.deadline_s) + 2))
    log.info("serving on http://%s:%d (docs at /docs)", cfg.serve.host, cfg.serve.port)
    server.run()


def serve_main(model: str | None, config: str | None, serve: dict[str, Any], capture_dir: str | None) -> int:
    """`roadwork serve`: config (defaults < YAML < flags), engine, server. Returns the exit code."""
    from roadwork.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    over: dict[str, Any] = {"serve": {k: v for k, v in serve.items() if v is not None}}
    try:
        cfg = shell_config(config, model, over, capture_dir)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    run_server(Engine.from_config(cfg), cfg)
    return 0
