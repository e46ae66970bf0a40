"""The FastAPI application of ``conceptseg serve`` (docs/API.md): the front middleware (API
key, request body limit by Content-Length, metrics by route template), optional CORS, the
meta routes (health, model, metrics, the web page), and the image (:mod:`.images`) and video
(:mod:`.videos`) routers. Everything they use is built by
:func:`~.context.build_context` and injected through the :class:`~.context.Context`; every
error leaves in the one shape of :mod:`.http_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ServeError
from . import schemas as S
from .context import Context, expire_loop, shutdown
from .http_errors import error_response, install_errors
from .images import image_routes
from .videos import video_routes

STATIC_DIR = Path(__file__).parent / "static"  # the web page (written by the web helper)


class BodyLimit:
    """Counts a request body's bytes as they arrive: past the limit the request fails with 413,
    also for a body sent without Content-Length (chunked), before it is all spooled."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, f"request body is above the limit of "
                                                 f"{self.max_bytes:,} bytes (--max-upload-mb)")
            return message

        await self.app(scope, counted, send)


def install_middleware(app: FastAPI, ctx: Context) -> None:
    """API key, body size by Content-Length, metrics; then CORS when origins are given."""
    limit = ctx.limits.max_upload_bytes
    app.add_middleware(BodyLimit, max_bytes=limit)  # inside the front middleware below

    @app.middleware("http")
    async def _front(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        response = None
        if ctx.api_key and path.startswith("/v1/") and path != "/v1/health":
            given = request.headers.get("x-api-key") or ""
            auth = request.headers.get("authorization") or ""
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), ctx.api_key.encode()):
                response = error_response(401, "unauthorized", "missing or wrong API key "
                                          "(Authorization: Bearer KEY or X-API-Key: KEY)")
                response.headers["WWW-Authenticate"] = "Bearer"
        length = request.headers.get("content-length")
        if response is None and length is not None:
            if not length.isdigit():
                response = error_response(400, "bad_request", "invalid Content-Length")
            elif int(length) > limit:
                response = error_response(413, "too_large", f"request body is {int(length):,} "
                                          f"bytes, above the limit of {limit:,} (--max-upload-mb)")
        if response is None:
            response = await call_next(request)
        route = request.scope.get("route")
        ctx.metrics.observe(getattr(route, "path", "unmatched"), request.method,
                            response.status_code, time.perf_counter() - start)
        return response

    if ctx.cors:
        app.add_middleware(CORSMiddleware, allow_origins=ctx.cors, allow_methods=["*"],
                           allow_headers=["*"], max_age=600)


def create_app(ctx: Context) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        reaper = asyncio.create_task(expire_loop(ctx))
        try:
            yield
        finally:
            reaper.cancel()
            shutdown(ctx)

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN (the schema stays at
    # /openapi.json); nothing the server serves fetches from the internet
    app = FastAPI(title="conceptseg", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Promptable concept segmentation (SAM 3) over HTTP: docs/API.md")
    app.state.ctx = ctx
    install_errors(app)
    install_middleware(app, ctx)
    app.include_router(image_routes(ctx))
    app.include_router(video_routes(ctx))
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise ServeError("the web page is not installed", 404, "not_found")
        return FileResponse(page)

    @app.get("/v1/health", response_model=S.Health)
    async def health():
        return {"status": "ok", "version": __version__}

    @app.get("/v1/model", response_model=S.ModelInfo)
    async def model():
        return ctx.model_info

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        body, ctype = ctx.metrics.render()
        return Response(body, media_type=ctype)

    return app


