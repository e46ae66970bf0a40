"""SA-Co/VEval (YTVIS-style) video ground truth: videos, phrases, GT masklets and the (video,
phrase) pairs that are scored, loaded and validated.

The file (as written by :func:`conceptseg.data.synthetic_video.write_video_dataset` and used by
the public SA-Co/VEval files) has ``videos`` (id, file_names, height, width, length),
``categories`` (one per noun phrase), ``annotations`` (one masklet per (video, phrase, object),
per-frame ``segmentations``: RLE or None) and ``video_np_pairs`` (every (video, phrase)
datapoint, negatives included).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, Collection, Mapping

from ...errors import EvalInputError
from ..inputs import is_int, load_source
from ..segmentation import to_compressed_rle

__all__ = ["PairKey", "VideoInfo", "GTMasklet", "VideoGroundTruth", "load_video_ground_truth",
           "restrict_pairs"]

PairKey = tuple[int, int]  # (video_id, category_id)


@dataclass(frozen=True)
class VideoInfo:
    """One video of the ground truth: its id, name (frame folder or file stem) and size."""

    id: int
    name: str
    length: int
    height: int
    width: int


@dataclass
class GTMasklet:
    """One ground-truth masklet: compressed RLE (str counts) or None per frame."""

    id: int
    segmentations: list[dict | None]
    iscrowd: bool = False
    object_id: Any = None


@dataclass
class VideoGroundTruth:
    """Validated video GT.  ``masklets[(video_id, category_id)]`` lists the GT masklets of a
    pair; ``np_pairs`` the (video, phrase) datapoints of ``video_np_pairs`` (negatives
    included); ``has_np_pairs`` is False when the file has no ``video_np_pairs`` key."""

    videos: dict[int, VideoInfo]
    categories: dict[int, str]
    masklets: dict[PairKey, list[GTMasklet]]
    np_pairs: list[PairKey]
    has_np_pairs: bool = True
    source: str = ""

    def phrase(self, category_id: int) -> str:
        return self.categories.get(category_id, str(category_id))


def load_video_ground_truth(src: str | os.PathLike | Mapping[str, Any]) -> VideoGroundTruth:
    """Read + validate a YTVIS / SA-Co-VEval GT file (or dict).  Uncompressed RLEs are
    compressed; a missing annotation height/width is taken from its video (as the official
    ``_fill_in_ann_height_width``).  Raises :class:`EvalInputError` on malformed input."""
    data, where = load_source(src, "ground truth")
    if not isinstance(data, Mapping) or not isinstance(data.get("videos"), list):
        raise EvalInputError(f"{where}: video ground truth must be a dict with a 'videos' list")
    videos: dict[int, VideoInfo] = {}
    for i, v in enumerate(data["videos"]):
        vid = v.get("id") if isinstance(v, Mapping) else None
        if not is_int(vid):
            raise EvalInputError(f"{where}: videos[{i}]: missing or non-integer 'id'", i, vid)
        if vid in videos:
            raise EvalInputError(f"{where}: videos[{i}]: duplicate video id {vid}", i, vid)
        files = v.get("file_names")
        length = len(files) if isinstance(files, list) and files else v.get("length")
        h, w = v.get("height"), v.get("width")
        if not (is_int(length) and length > 0 and is_int(h) and is_int(w) and h > 0 and w > 0):
            raise EvalInputError(f"{where}: video {vid}: needs file_names (or length), height and width", i, vid)
        name = v.get("video_name") or (files[0].split("/")[0] if isinstance(files, list) and files else str(vid))
        videos[vid] = VideoInfo(vid, str(name), int(length), int(h), int(w))
    categories: dict[int, str] = {}
    for i, c in enumerate(data.get("categories") or []):
        if not isinstance(c, Mapping) or not is_int(c.get("id")):
            raise EvalInputError(f"{where}: categories[{i}]: missing or non-integer 'id'", i)
        categories[c["id"]] = str(c.get("name", c["id"]))
    masklets: dict[PairKey, list[GTMasklet]] = defaultdict(list)
    for i, a in enumerate(data.get("annotations") or []):
        if not isinstance(a, Mapping):
            raise EvalInputError(f"{where}: annotations[{i}] is not an object", i)
        aid, vid, cid = a.get("id", i + 1), a.get("video_id"), a.get("category_id")
        if vid not in videos:
            raise EvalInputError(f"{where}: annotation {aid}: unknown video_id {vid!r}", i, aid)
        if not is_int(cid):
            raise EvalInputError(f"{where}: annotation {aid}: missing or non-integer category_id", i, aid)
        v = videos[vid]
        segs = a.get("segmentations")
        if not isinstance(segs, list) or len(segs) != v.length:
            raise EvalInputError(f"{where}: annotation {aid}: 'segmentations' must list one RLE or null per "
                                 f"frame ({v.length} for video {vid})", i, aid)
        h, w = a.get("height", v.height), a.get("width", v.width)
        try:
            segs = [None if s is None else to_compressed_rle(s, h, w) for s in segs]
        except (EvalInputError, TypeError, ValueError, KeyError) as e:
            raise EvalInputError(f"{where}: annotation {aid}: bad segmentation ({e})", i, aid) from e
        masklets[(vid, cid)].append(GTMasklet(aid, segs, bool(a.get("iscrowd", 0)), a.get("object_id")))
    has_np = "video_np_pairs" in data
    np_pairs: list[PairKey] = []
    for i, p in enumerate(data.get("video_np_pairs") or []):
        if not isinstance(p, Mapping) or p.get("video_id") not in videos or not is_int(p.get("category_id")):
            raise EvalInputError(f"{where}: video_np_pairs[{i}]: needs a known video_id and an integer "
                                 "category_id", i)
        np_pairs.append((p["video_id"], p["category_id"]))
    return VideoGroundTruth(videos, categories, dict(masklets), sorted(set(np_pairs)), has_np, where)




def restrict_pairs(gt: VideoGroundTruth, pairs: Collection[PairKey]) -> VideoGroundTruth:
    """The same ground truth scoring only ``pairs`` (e.g. the pairs that were predicted): the
    other pairs' masklets and ``video_np_pairs`` entries are left out."""
    keep = set(pairs)
    return replace(gt, masklets={k: v for k, v in gt.masklets.items() if k in keep},
                   np_pairs=[k for k in gt.np_pairs if k in keep])
