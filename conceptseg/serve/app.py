"""The FastAPI application of ``conceptseg serve`` (docs/API.md): routes only, thin. The model
holder (:class:`~.service.Service`), the session stores, the limits and the metrics are built
by :func:`build_context` and injected; video routes live in :mod:`.videos`.

Every error leaves as ``{"error": {"code", "message"}}`` with a 4xx/5xx status, FastAPI's own
validation errors included; an unexpected exception is a 500 with a one-line body (the
traceback goes to the server log only).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Body, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ConceptSegError, InputError, ServeError
from . import schemas as S
from .inputs import check_texts, clip_exemplars, parse_exemplar_row, parse_exemplar_spec
from .limits import Limits, check_unit, decode_image
from .metrics import Metrics
from .results import check_format, phrase_result, refine_masks
from .service import Job, Service
from .sessions import ImageEntry, ImageSessions, VideoSessions, check_image_id, close_video
from .videos import video_routes

STATIC_DIR = Path(__file__).parent / "static"  # the web page (written by the web helper)
MAX_INSTANCES_CAP = 1000  # largest max_instances a request may ask for
log = logging.getLogger("conceptseg.serve")


@dataclass
class Context:
    """Everything the routes need, built once per server."""

    service: Service
    limits: Limits
    images: ImageSessions
    videos: VideoSessions
    metrics: Metrics
    model_info: dict  # GET /v1/model
    api_key: str | None = None  # required on /v1/* except /v1/health when set
    cors: list[str] = field(default_factory=list)  # allowed origins; empty: CORS off
    file_preprocessing: str = "torchcodec"  # how video frames are normalised
    tmp_root: Path | None = None  # server-owned directory of uploaded clips

    async def encode(self, data: bytes) -> tuple[ImageEntry, bool]:
        """The cached encoding of an uploaded image (by content hash), encoding it once."""
        sha = hashlib.sha256(data).hexdigest()
        image_id = sha[:16]
        entry = self.images.peek(image_id)
        if entry is not None:
            return entry, True
        rgb = await run_in_threadpool(decode_image, data, self.limits)
        predictor = await self.service.run(lambda: self.service.new_predictor(rgb))
        entry = ImageEntry(image_id, sha, predictor, width=rgb.shape[1], height=rgb.shape[0])
        self.images.put(entry)
        return entry, False

    async def segment(self, entry: ImageEntry, texts: list, exemplars: list, threshold: float,
                      fmt: str, max_instances: int, tolerance: float) -> list[dict]:
        ex = clip_exemplars(exemplars, entry.width, entry.height)
        preds = await self.service.segment(entry, texts, ex, threshold, max_instances)
        return await run_in_threadpool(lambda: [
            phrase_result(p, fmt, tolerance, max_instances=max_instances) for p in preds])

    def check_segment_args(self, texts, has_exemplars: bool, threshold: float, fmt: str,
                           max_instances: int) -> list:
        check_format(fmt)
        check_unit(threshold, "threshold")
        if not 0 <= max_instances <= MAX_INSTANCES_CAP:
            raise InputError(f"max_instances must be within [0, {MAX_INSTANCES_CAP}], got "
                             f"{max_instances}")
        return check_texts(texts, self.limits.max_prompt_chars, self.limits.max_texts,
                           allow_none=has_exemplars)


def error_response(status: int, code: str, message: str, retry_after: int | None = None):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def error_of(e: ConceptSegError) -> tuple[int, str]:
    """(HTTP status, code) of a library error."""
    if isinstance(e, ServeError):
        return e.status, e.code
    if isinstance(e, InputError):
        return 422, "invalid_input"
    name = type(e).__name__
    return (409, "session_conflict") if name == "SessionError" else (422, "unprocessable")


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, "malformed_json", "the request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}{more}"


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(ConceptSegError)
    async def _library(request, exc: ConceptSegError):
        status, code = error_of(exc)
        return error_response(status, code, str(exc).splitlines()[0] if str(exc) else code,
                              getattr(exc, "retry_after", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        return error_response(*_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request",
                413: "too_large"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error (see the server log)")


def install_middleware(app: FastAPI, ctx: Context) -> None:
    limit = ctx.limits.max_upload_bytes

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
        reaper = asyncio.create_task(_expire_loop(ctx))
        try:
            yield
        finally:
            reaper.cancel()
            shutdown(ctx)

    app = FastAPI(title="conceptseg", version=__version__, lifespan=lifespan,
                  description="Promptable concept segmentation (SAM 3) over HTTP: docs/API.md")
    app.state.ctx = ctx
    install_errors(app)
    install_middleware(app, ctx)
    image_routes(app, ctx)
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


def image_routes(app: FastAPI, ctx: Context) -> None:
    @app.post("/v1/segment", response_model=S.SegmentResponse,
              responses={413: {"model": S.ErrorResponse}, 422: {"model": S.ErrorResponse}})
    async def segment(image: UploadFile = File(...), text: list[str] = Form([]),
                      exemplar: list[str] = Form([]), threshold: float = Form(0.5),
                      format: str = Form("rle"), max_instances: int = Form(100),
                      tolerance: float = Form(1.0)):
        ex = [parse_exemplar_spec(s) for s in exemplar]
        texts = ctx.check_segment_args(text, bool(ex), threshold, format, max_instances)
        entry, _ = await ctx.encode(await image.read())
        results = await ctx.segment(entry, texts, ex, threshold, format, max_instances, tolerance)
        return {"image": {"width": entry.width, "height": entry.height, "sha256": entry.sha256},
                "results": results}

    @app.post("/v1/segment/batch", response_model=S.BatchResponse, response_model_exclude_none=True)
    async def segment_batch(req: S.BatchRequest):
        ex = [parse_exemplar_row(r) for r in req.exemplars]
        texts = ctx.check_segment_args(req.text, bool(ex), req.threshold, req.format,
                                       req.max_instances)
        if len(req.images) > ctx.limits.max_images_per_batch:
            raise InputError(f"{len(req.images)} images in one batch; the limit is "
                             f"{ctx.limits.max_images_per_batch}")
        out = []
        for i, item in enumerate(req.images):
            try:
                entry = await _batch_image(ctx, item)
                results = await ctx.segment(entry, texts, ex, req.threshold, req.format,
                                            req.max_instances, req.tolerance)
                out.append({"index": i, "image_id": entry.image_id, "results": results})
            except ConceptSegError as e:  # this image's error; the others go on
                status, code = error_of(e)
                out.append({"index": i, "error": {"code": code, "message": str(e)}})
        return {"results": out}

    @app.post("/v1/images", response_model=S.ImageUploadResponse)
    async def upload_image(image: UploadFile = File(...)):
        entry, cached = await ctx.encode(await image.read())
        return {"image_id": entry.image_id, "width": entry.width, "height": entry.height,
                "cached": cached}

    @app.post("/v1/images/{image_id}/segment", response_model=S.ImageSegmentResponse)
    async def segment_image(image_id: str, req: S.ImageSegmentRequest):
        entry = ctx.images.get(check_image_id(image_id))
        ex = [parse_exemplar_row(r) for r in req.exemplars]
        texts = ctx.check_segment_args(req.text, bool(ex), req.threshold, req.format,
                                       req.max_instances)
        results = await ctx.segment(entry, texts, ex, req.threshold, req.format,
                                    req.max_instances, req.tolerance)
        return {"image_id": entry.image_id, "results": results}

    @app.post("/v1/images/{image_id}/refine", response_model=S.RefineResponse)
    async def refine(image_id: str, req: S.RefineRequest = Body(...)):
        entry = ctx.images.get(check_image_id(image_id))
        if not ctx.service.has_tracker:
            raise InputError("refine needs a checkpoint with tracker weights")
        check_format(req.format)
        box = None
        if req.box is not None:
            if len(req.box) != 4:
                raise InputError("box must be [x0, y0, x1, y1] in pixels")
            box = clip_exemplars([(tuple(req.box), True)], entry.width, entry.height)[0][0]
        instance = None
        if req.instance is not None:
            pred = entry.predictions.get(req.instance.text)
            if pred is None:
                raise InputError(f"no segment of {req.instance.text[:80]!r} on this image yet: "
                                 "call /segment with that text first")
            if req.instance.id >= len(pred):
                raise InputError(f"instance {req.instance.id} not found: the last segment of "
                                 f"{req.instance.text[:80]!r} found {len(pred)}")
            instance = (pred, req.instance.id)
        mask_input = None
        if req.mask_input_id is not None:
            mask_input = entry.refinements.get(req.mask_input_id)
            if mask_input is None:
                raise InputError(f"unknown mask_input_id {req.mask_input_id[:40]!r}")
        if req.points is None and box is None and instance is None and mask_input is None:
            raise InputError("give points, a box, an instance or a mask_input_id")
        ref = await ctx.service.run(lambda: entry.predictor.refine(
            points=req.points, labels=req.labels, box=box, mask_input=mask_input,
            multimask=req.multimask, instance=instance))
        rid = entry.remember_refine(ref.logits[0])
        masks = await run_in_threadpool(refine_masks, ref, req.format, req.tolerance)
        return {"image_id": entry.image_id, "refine_id": rid, "masks": masks}

    @app.delete("/v1/images/{image_id}", response_model=S.Deleted)
    async def delete_image(image_id: str):
        ctx.images.delete(check_image_id(image_id))
        return {"deleted": True}


async def _batch_image(ctx: Context, item: S.BatchImage) -> ImageEntry:
    if (item.data is None) == (item.image_id is None):
        raise InputError("give exactly one of data (base64) or image_id")
    if item.image_id is not None:
        return ctx.images.get(check_image_id(item.image_id))
    try:
        data = base64.b64decode(item.data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("data is not valid base64") from None
    entry, _ = await ctx.encode(data)
    return entry


async def _expire_loop(ctx: Context) -> None:
    """Expire idle sessions every few seconds (video ones are closed on the worker)."""
    period = max(0.5, min(ctx.limits.session_ttl / 4, 10.0))
    while True:
        await asyncio.sleep(period)
        ctx.images.expire()
        for entry in ctx.videos.expired():
            with contextlib.suppress(ConceptSegError):
                ctx.service.queue.submit(Job(lambda e=entry: close_video(e)), force=True)


def shutdown(ctx: Context) -> None:
    """Stop the worker, close every video session, delete the uploaded clips."""
    ctx.service.close()
    for entry in ctx.videos.drain():
        with contextlib.suppress(Exception):
            close_video(entry)
    if ctx.tmp_root is not None:
        shutil.rmtree(ctx.tmp_root, ignore_errors=True)


def build_context(model, limits: Limits, *, model_info: dict, precision: str = "fp32",
                  api_key: str | None = None, cors: list[str] | None = None,
                  file_preprocessing: str = "torchcodec") -> Context:
    """The service, session stores and metrics of one server around a loaded model."""
    service = Service(model, timeout=limits.timeout, queue_depth=limits.queue_depth,
                      precision=precision)
    tmp_root = Path(tempfile.mkdtemp(prefix="conceptseg-serve-"))
    images = ImageSessions(limits.max_sessions, limits.session_ttl)
    videos = VideoSessions(tmp_root, limits.max_sessions, limits.session_ttl)
    metrics = Metrics(lambda: service.queue.depth, lambda: len(images), lambda: len(videos),
                      lambda: service.queue.batched)
    return Context(service, limits, images, videos, metrics, model_info, api_key,
                   list(cors or []), file_preprocessing, tmp_root)
