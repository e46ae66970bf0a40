"""What the routes of one server share, built once by :func:`build_context`: the model holder
(:class:`~.service.Service`), the session stores, the limits, the metrics; and the steps every
segment route takes (encode an upload once, check the arguments, segment, serialise)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from ..errors import ConceptSegError, InputError
from ..inference.prompts import clip_exemplars
from .inputs import check_texts
from .limits import Limits, check_unit, decode_image
from .metrics import Metrics
from .results import check_format, phrase_result
from .service import Job, Service
from .sessions import ImageEntry, ImageSessions, VideoSessions, close_video

MAX_INSTANCES_CAP = 1000  # largest max_instances a request may ask for


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
        sha = await run_in_threadpool(lambda: hashlib.sha256(data).hexdigest())
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

        def finish():  # off the model's worker: serialising and RLE for later refines
            for p in preds:
                entry.remember(p)
            return [phrase_result(p, fmt, tolerance, max_instances=max_instances) for p in preds]
        return await run_in_threadpool(finish)

    def check_segment_args(self, texts, has_exemplars: bool, threshold: float, fmt: str,
                           max_instances: int) -> list:
        check_format(fmt)
        check_unit(threshold, "threshold")
        if not 0 <= max_instances <= MAX_INSTANCES_CAP:
            raise InputError(f"max_instances must be within [0, {MAX_INSTANCES_CAP}], got "
                             f"{max_instances}")
        return check_texts(texts, self.limits.max_prompt_chars, self.limits.max_texts,
                           allow_none=has_exemplars)


async def expire_loop(ctx: Context) -> None:
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
