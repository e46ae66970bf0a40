"""The image routes of the v1 API (docs/API.md): one-shot segment, batch (a failing image is
answered with its own error), and image sessions (upload once and encode once, segment,
refine by clicks / box / previous mask / an instance found by text, delete)."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Body, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from ..errors import ConceptSegError, InputError
from ..inference.prompts import clip_exemplars
from . import schemas as S
from .http_errors import error_of
from .inputs import parse_exemplar_row, parse_exemplar_spec
from .results import check_format, refine_masks
from .sessions import ImageEntry, check_image_id


def image_routes(ctx) -> APIRouter:
    """The routes, bound to a :class:`~.context.Context`."""
    app = APIRouter()

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
                _, code = error_of(e)
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
            instance = (pred.instance(req.instance.id), 0)
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

    return app


async def _batch_image(ctx, item: S.BatchImage) -> ImageEntry:
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
