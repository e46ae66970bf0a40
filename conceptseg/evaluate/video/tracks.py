"""Tracker output to YTVIS results: the per-frame JSON of ``conceptseg track --json`` (or a
session's ``results().to_json()``) becomes one masklet per object id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ...errors import EvalInputError
from ...ops.masks import rle_area, rle_to_xywh
from ..inputs import load_source
from .ground_truth import PairKey, VideoGroundTruth, VideoInfo

__all__ = ["track_json_to_ytvis", "tracks_by_pair", "tracks_to_ytvis"]


def track_json_to_ytvis(doc: Mapping[str, Any] | str | os.PathLike, video_id: int, category_id: int,
                        num_frames: int | None = None) -> list[dict]:
    """Convert the per-frame JSON of ``conceptseg track --json`` (``frames`` -> ``objects`` with
    ``id``, ``score``, ``box`` xyxy, ``rle``) to YTVIS results: one masklet per object id with
    ``segmentations`` / ``bboxes`` (xywh) / ``areas`` per frame (None where the object is absent
    or the frame was not processed) and ``score`` = the mean of its per-frame scores (what the
    official video post-processor uses as tracklet score)."""
    doc, where = load_source(doc, "tracker JSON")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("frames"), list):
        raise EvalInputError(f"{where}: not a tracker JSON (no 'frames' list)")
    T = num_frames if num_frames is not None else doc.get("num_frames")
    if T is None:
        T = 1 + max((int(f["frame"]) for f in doc["frames"]), default=-1)
    T = int(T)
    tracks: dict[int, dict] = {}
    for f in doc["frames"]:
        t = int(f["frame"])
        if not 0 <= t < T:
            raise EvalInputError(f"{where}: frame {t} is outside the video's {T} frames")
        for o in f.get("objects", []):
            tr = tracks.setdefault(int(o["id"]), {"segmentations": [None] * T, "bboxes": [None] * T,
                                                  "areas": [None] * T, "scores": []})
            rle = dict(o["rle"])
            area = int(rle_area([rle])[0])
            tr["segmentations"][t] = rle
            tr["areas"][t] = area
            tr["bboxes"][t] = [float(v) for v in rle_to_xywh([rle])[0]] if area else None
            tr["scores"].append(float(o["score"]))
    return [{"video_id": int(video_id), "category_id": int(category_id),
             "score": float(np.mean(tr["scores"])), "segmentations": tr["segmentations"],
             "bboxes": tr["bboxes"], "areas": tr["areas"], "track_id": oid}
            for oid, tr in sorted(tracks.items())]


def _video_keys(v: VideoInfo) -> set[str]:
    return {v.name, str(v.id)}


def tracks_by_pair(docs: Iterable[Mapping[str, Any] | str | os.PathLike],
                   gt: VideoGroundTruth) -> dict[PairKey, list[dict]]:
    """Convert several tracker JSONs, resolving each to a (video, phrase) of ``gt``: the video by
    the stem or folder name of its ``video`` path (against ``video_name`` / the frame folder /
    the id), the phrase by its ``text`` (exact, then case-insensitive).  Every resolved pair is
    a key, also when its tracker found nothing (so a caller knows which pairs were run)."""
    by_key: dict[str, int] = {}
    for v in gt.videos.values():
        for k in _video_keys(v):
            by_key.setdefault(k, v.id)
    by_phrase = {name: cid for cid, name in gt.categories.items()}
    by_lower = {name.strip().lower(): cid for cid, name in gt.categories.items()}
    out: dict[PairKey, list[dict]] = {}
    for d in docs:
        doc, where = load_source(d, "tracker JSON")
        if not isinstance(doc, Mapping) or "frames" not in doc:
            raise EvalInputError(f"{where}: not a tracker JSON (no 'frames' list)")
        p = Path(str(doc.get("video", "")))
        vid = next((by_key[k] for k in (p.name, p.stem) if k in by_key), None)
        if vid is None:
            raise EvalInputError(f"{where}: video {str(p)!r} matches no video of the ground truth")
        text = str(doc.get("text", ""))
        cid = by_phrase.get(text, by_lower.get(text.strip().lower()))
        if cid is None:
            raise EvalInputError(f"{where}: phrase {text!r} is not a category of the ground truth")
        out.setdefault((vid, cid), []).extend(track_json_to_ytvis(doc, vid, cid, gt.videos[vid].length))
    return out


def tracks_to_ytvis(docs: Iterable[Mapping[str, Any] | str | os.PathLike], gt: VideoGroundTruth) -> list[dict]:
    """:func:`tracks_by_pair` as one flat YTVIS results list."""
    return [p for preds in tracks_by_pair(docs, gt).values() for p in preds]
