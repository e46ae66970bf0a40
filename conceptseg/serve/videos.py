"""The video routes of the v1 API (docs/API.md): upload a clip, prompt a frame (text,
exemplars, clicks), stream the propagation as NDJSON (one line per frame), remove an object,
close, and fetch a frame as JPEG for playback. Every model step runs on the service's worker."""

from __future__ import annotations

import io
import json
import time

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response, StreamingResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..errors import ConceptSegError, InputError, ServeError
from ..inference.prompts import clip_exemplars
from ..inference.video import VideoSession
from . import schemas as S
from .inputs import check_texts, parse_exemplar_row
from .limits import check_upload, video_suffix
from .results import frame_objects
from .service import Job
from .sessions import VideoEntry, close_video, discard_directory

JPEG_QUALITY = 85  # frames served for playback


def video_routes(ctx) -> APIRouter:
    """The routes, bound to a :class:`~.app.Context`."""
    r = APIRouter()
    service = ctx.service

    def need_tracker():
        if not service.has_tracker:
            raise ServeError("video routes need a checkpoint with tracker weights", 422,
                             "no_tracker")

    @r.post("/v1/videos", response_model=S.VideoUploadResponse)
    async def upload_video(video: UploadFile = File(...)):
        need_tracker()
        suffix = video_suffix(video.filename, video.content_type)
        data = check_upload(await video.read(), ctx.limits, "video")
        sid, directory = ctx.videos.reserve()
        path = directory / f"clip{suffix}"  # a name of ours: never the client's file name
        try:
            await run_in_threadpool(path.write_bytes, data)
            session = await service.run(lambda: VideoSession(
                service.model, path, precision=service.precision,
                file_preprocessing=ctx.file_preprocessing, device=service.device))
        except BaseException:
            discard_directory(directory)
            raise
        entry = VideoEntry(sid, session, directory)
        try:
            ctx.videos.add(entry)
        except ConceptSegError:
            service.queue.submit(Job(lambda: close_video(entry)), force=True)
            raise
        h, w = session.size
        return {"session_id": sid, "num_frames": session.num_frames,
                "fps": float(session.source.fps or 0.0), "width": w, "height": h}

    @r.post("/v1/videos/{sid}/prompts", response_model=S.VideoFrame)
    async def prompt(sid: str, req: S.VideoPromptRequest):
        entry = ctx.videos.get(sid)
        session = entry.session
        text = None
        if req.text is not None:
            text = check_texts([req.text], ctx.limits.max_prompt_chars, 1)[0]
        h, w = session.size
        ex = clip_exemplars([parse_exemplar_row(x) for x in req.exemplars or []], w, h)
        if req.points is None and text is None and not ex:
            raise InputError("give text, exemplars or points")
        if req.points is not None and (text is not None or ex):
            raise InputError("clicks (points) go alone: prompt text / exemplars in another call")
        fmt = "rle"

        def run():
            if req.points is not None:
                return session.add_clicks(req.obj_id, req.points, req.labels, frame=req.frame)
            if ex:  # exemplar boxes, with the phrase if one was given: one concept
                return session.add_exemplars([b for b, _ in ex], frame=req.frame,
                                             labels=[p for _, p in ex], replace=req.replace,
                                             text=text)
            return session.add_text(text, frame=req.frame, replace=req.replace)

        fr = await service.run(run)
        objects = await run_in_threadpool(frame_objects, fr, fmt)
        return {"frame": fr.frame_idx, "objects": objects}

    @r.post("/v1/videos/{sid}/propagate", responses={200: {"content": {
        "application/x-ndjson": {}}, "description": "one JSON line per frame, then "
        '{"done": true, "frames": n}'}})
    async def propagate(sid: str, req: S.PropagateRequest | None = None):
        req = req or S.PropagateRequest()
        entry = ctx.videos.get(sid)
        it = await service.run(lambda: entry.session.propagate(req.direction, req.start,
                                                               req.max_frames))
        entry.streams += 1
        return StreamingResponse(_stream(ctx, entry, it, req), media_type="application/x-ndjson")

    @r.delete("/v1/videos/{sid}/objects/{obj_id}", response_model=S.Removed)
    async def remove_object(sid: str, obj_id: int):
        entry = ctx.videos.get(sid)
        await service.run(lambda: entry.session.remove_object(obj_id))
        return {"removed": obj_id}

    @r.delete("/v1/videos/{sid}", response_model=S.Closed)
    async def close(sid: str):
        entry = ctx.videos.pop(sid)
        await service.run(lambda: close_video(entry), force=True)
        return {"closed": True}

    @r.get("/v1/videos/{sid}/frames/{t}", response_class=Response,
           responses={200: {"content": {"image/jpeg": {}}}})
    async def frame(sid: str, t: int):
        entry = ctx.videos.get(sid)
        if not 0 <= t < entry.session.num_frames:
            raise InputError(f"frame {t} is out of range: the video has "
                             f"{entry.session.num_frames} frames")
        rgb = await service.run(lambda: entry.session.source.frame(t))
        return Response(await run_in_threadpool(_jpeg, rgb), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=600"})

    return r


async def _stream(ctx, entry: VideoEntry, it, req):
    """NDJSON lines of a propagation pass; an error mid-stream is a last ``{"error"}`` line."""
    service, n = ctx.service, 0
    try:
        while True:
            item = await service.run(lambda: next(it, None), force=True)
            if item is None:
                break
            t, fr = item
            objects = await run_in_threadpool(frame_objects, fr, req.format, req.tolerance)
            entry.last_used = time.monotonic()
            n += 1
            yield json.dumps({"frame": int(t), "objects": objects}) + "\n"
        yield json.dumps({"done": True, "frames": n}) + "\n"
    except ConceptSegError as e:
        code = getattr(e, "code", "session_conflict" if type(e).__name__ == "SessionError"
                       else "invalid_input")
        yield json.dumps({"error": {"code": code, "message": str(e)}}) + "\n"
    finally:
        entry.streams -= 1
        entry.last_used = time.monotonic()
        try:  # a client that left mid-pass: end the pass on the worker
            service.queue.submit(Job(it.close), force=True)
        except ConceptSegError:
            pass


def _jpeg(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
