"""The review page and its JSON API (FastAPI): `roadwork review DIR`, and `/review` of `roadwork serve --capture DIR`.

    GET    /                         the page (static HTML + JS; every datum is set with textContent)
    GET    /api/info                 counts, the days / tiers / sources present, whether overlays exist
    GET    /api/items                captured images, largest uncertainty first; filters: day, tier,
                                     pmin / pmax (probability band), status (all | unlabelled | labelled)
    GET    /api/images/{id}          the captured bytes
    GET    /api/images/{id}/overlay  the model's location map over the image (404 when it has none)
    PUT    /api/labels/{id}          {"label": "roadwork" | "none", "reviewer": "..."}: saved at once
    DELETE /api/labels/{id}          forget a label (undo)

Unknown ids (anything but a 64-hex sha256, so no path ever reaches the file system), malformed
labels and bad filters are 4xx. Writes need a JSON body, so a page on another origin cannot post a
label without a CORS preflight that this app never grants. With an API key (the server's
`--api-key`), every request needs it: in the X-API-Key header, or a cookie the page sets after
being opened once as `...?key=KEY`.
"""

from __future__ import annotations

import io
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from roadwork.review.store import LABELS, ReviewError, ReviewStore

STATIC = Path(__file__).parent / "static"
KEY_COOKIE = "roadwork_review_key"
MAX_PAGE = 1000  # items per /api/items answer
_NAMES = {v: k for k, v in LABELS.items()}
_MEDIA = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif",
          ".bmp": "image/bmp", ".tif": "image/tiff"}
_HEADERS = {  # the page loads nothing from elsewhere and runs no inline script
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

Overlay = Callable[[Image.Image], Optional[Image.Image]]  # image -> location map drawn over it, or None


class LabelBody(BaseModel):
    label: str = Field(..., description='"roadwork" or "none" ("skip" writes nothing).')
    reviewer: str = Field("", max_length=64, description="Who labelled (kept in labels.csv).")


def create_review_app(root: str | Path, api_key: str | None = None, overlay: Overlay | None = None,
                      before_read: Callable[[], None] | None = None) -> FastAPI:
    """The review app for one capture folder. `before_read` runs before the index is listed (the
    serving capture flushes its buffered rows there); `overlay` draws the model's location map."""
    store = ReviewStore(root)
    app = FastAPI(title="roadwork review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(ReviewError)
    async def _refused(_: Request, e: ReviewError) -> JSONResponse:
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or request.cookies.get(KEY_COOKIE) or ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise ReviewError(401, "missing or wrong API key: open the page once as .../review/?key=KEY")

    @app.get("/", include_in_schema=False)
    async def page(request: Request, key: Optional[str] = None) -> Response:
        if api_key is not None and key is not None:
            if not secrets.compare_digest(key.encode(), api_key.encode()):
                raise ReviewError(401, "wrong API key")
            # keep the key out of the address bar and history: a cookie for this path, then a clean URL
            out = RedirectResponse(str(request.url.remove_query_params("key")), status_code=303)
            out.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", path=request.url.path)
            return out
        require_key(request)
        return FileResponse(STATIC / "review.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: Literal["review.js", "review.css"]) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/javascript" if name.endswith(".js") else "text/css")

    def refresh() -> dict:
        if before_read is not None:
            before_read()
        return store.items()

    @app.get("/api/info", dependencies=[Depends(require_key)])
    async def info() -> dict[str, Any]:
        items = await run_in_threadpool(refresh)
        labels = store.labels()
        return {"folder": str(store.root), "labels_file": str(store.labels_path), "total": len(items),
                "labelled": sum(i in labels for i in items), "overlay": overlay is not None,
                "days": sorted({i.day for i in items.values()}, reverse=True),
                "tiers": sorted({i.tier for i in items.values()}),
                "sources": sorted({i.source for i in items.values()})}

    @app.get("/api/items", dependencies=[Depends(require_key)])
    async def items(day: Optional[str] = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
                    tier: Optional[str] = Query(None, max_length=200),
                    pmin: float = Query(0.0, ge=0.0, le=1.0), pmax: float = Query(1.0, ge=0.0, le=1.0),
                    status: Literal["all", "unlabelled", "labelled"] = "all",
                    offset: int = Query(0, ge=0), limit: int = Query(MAX_PAGE, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        if pmin > pmax:
            raise ReviewError(422, f"pmin ({pmin}) is above pmax ({pmax})")
        everything = await run_in_threadpool(refresh)
        labels = store.labels()
        chosen = [i for i in everything.values()
                  if (day is None or i.day == day) and (tier is None or i.tier == tier) and pmin <= i.prob <= pmax
                  and (status == "all" or (i.id in labels) == (status == "labelled"))]
        chosen.sort(key=lambda i: (-i.uncertainty, -i.timestamp, i.id))
        return {"total": len(chosen), "offset": offset, "items": [
            {"id": i.id, "prob": i.prob, "uncertainty": round(i.uncertainty, 4), "tier": i.tier, "source": i.source,
             "time": datetime.fromtimestamp(i.timestamp, timezone.utc).isoformat(timespec="seconds"),
             "day": i.day, "label": _label_name(labels.get(i.id)), "reviewer": (labels.get(i.id) or {}).get("reviewer", "")}
            for i in chosen[offset:offset + limit]]}

    @app.get("/api/images/{image_id}", dependencies=[Depends(require_key)])
    async def image(image_id: str) -> FileResponse:
        path = store.image_path(image_id)
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lower(), "application/octet-stream"))

    @app.get("/api/images/{image_id}/overlay", dependencies=[Depends(require_key)])
    async def overlay_png(image_id: str) -> Response:
        path = store.image_path(image_id)
        if overlay is None:
            raise ReviewError(404, "the model has no location map (start the review with a model that has one)")
        drawn = await run_in_threadpool(_draw, overlay, path)
        if drawn is None:
            raise ReviewError(404, "the model gave no location map for this image")
        return Response(drawn, media_type="image/png")

    @app.put("/api/labels/{image_id}", dependencies=[Depends(require_key)])
    async def put_label(image_id: str, body: LabelBody) -> dict[str, Any]:
        row = await run_in_threadpool(store.set_label, image_id, body.label, body.reviewer)
        return {"id": image_id, "label": body.label, "labelled_at": row["labelled_at"]}

    @app.delete("/api/labels/{image_id}", dependencies=[Depends(require_key)])
    async def delete_label(image_id: str) -> dict[str, Any]:
        store.item(image_id)  # unknown ids are 404 here too
        removed = await run_in_threadpool(store.clear_label, image_id)
        return {"id": image_id, "removed": removed}

    return app


def _label_name(row: dict[str, str] | None) -> str | None:
    if not row:
        return None
    try:
        return _NAMES.get(int(row.get("label", "")))
    except ValueError:
        return None


def _draw(overlay: Overlay, path: Path) -> bytes | None:
    with Image.open(path) as im:
        drawn = overlay(im.convert("RGB"))
    if drawn is None:
        return None
    buf = io.BytesIO()
    drawn.save(buf, format="PNG")
    return buf.getvalue()


def review_main(folder: str | Path, host: str, port: int, api_key: str | None = None, model: str | None = None,
                config: str | None = None, console: Any = None) -> int:
    """`roadwork review DIR`: serve the page until Ctrl-C. Returns the exit code (2: not a capture folder)."""
    import uvicorn
    from rich.console import Console

    from roadwork.review.overlay import engine_overlay

    console = console or Console(stderr=True)
    root = Path(folder)
    if not (root / "index").is_dir():
        console.print(f"[red]{root}: not a capture folder (no index/ in it); make one with "
                      f"roadwork serve --capture {root} or roadwork mine --capture {root}[/red]")
        return 2
    overlay = None
    if model or config:  # a model only for its location maps; the review itself needs none
        from roadwork.config import ConfigError, shell_config
        from roadwork.engine import Engine

        try:
            overlay = engine_overlay(Engine.from_config(shell_config(config, model)))
        except ConfigError as e:
            console.print(f"[red]{e}[/red]")
            return 2
        if overlay is None:
            console.print("the model has no location map: images are shown without an overlay")
    app = create_review_app(root, api_key=api_key, overlay=overlay)
    console.print(f"reviewing {root} on http://{host}:{port}/ (labels -> {root / 'labels.csv'}); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
