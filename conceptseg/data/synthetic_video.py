"""Synthetic concept videos: objects that move, occlude each other, leave and enter, with
ground-truth masklets and the phrases that match each object (see ``scene.py`` for still scenes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..runtime import progress as progress_bar
from .coco_export import atomic_json, atomic_png, box_xywh, mask_to_rle
from .phrases import Datapoint
from .scene_sampling import (SceneConfig, acceptable_objects, derive_seed, image_hw, mask_box,
                             object_diameter, pick, sample_degradation, sample_object_attrs,
                             scene_datapoints)
from .shapes import (UNIT_EXTENT, composite, degrade, make_background, rasterize,
                     sample_appearance, to_uint8_hwc)
from .splits import TRAIN_SEED

__all__ = ["VideoObject", "Video", "make_video", "write_video_dataset"]


@dataclass
class VideoObject:
    obj_id: int
    attributes: dict[str, str]
    masks: list  # per frame: (H, W) bool visible mask, or None when absent / fully occluded
    boxes: list  # per frame: xyxy tuple or None


@dataclass
class Video:
    seed: int
    split: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    objects: list[VideoObject]
    datapoints: list[Datapoint] = field(default_factory=list)  # instance_ids are object ids


def _trajectory(rng, T: int, H: int, W: int, ext: float, speed: float, cfg: SceneConfig) -> np.ndarray:
    """(T, 2) centre positions: bouncing inside the frame, entering, or leaving during the clip."""
    r = rng.random()
    kind = "enter" if r < cfg.p_enter else ("leave" if r < cfg.p_enter + cfg.p_leave else "bounce")
    if kind == "bounce":
        lo, hi = np.array([ext, ext]), np.array([max(W - ext, ext), max(H - ext, ext)])
        p = rng.uniform(lo, hi)
        heading = rng.uniform(0, 2 * math.pi)
        v = speed * np.array([math.cos(heading), math.sin(heading)])
        out = np.empty((T, 2))
        for t in range(T):
            out[t] = p
            p = p + v
            for a in range(2):
                if p[a] < lo[a] or p[a] > hi[a]:
                    v[a] = -v[a]
                    p[a] = np.clip(2 * (lo[a] if p[a] < lo[a] else hi[a]) - p[a], lo[a], hi[a])
        return out
    edge = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
    normal = [np.array([1.0, 0.0]), np.array([-1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, -1.0])][edge]
    along = rng.uniform(0.15, 0.85)
    boundary = [np.array([-ext, along * H]), np.array([W + ext, along * H]),
                np.array([along * W, -ext]), np.array([along * W, H + ext])][edge]
    ang = math.atan2(normal[1], normal[0]) + rng.uniform(-math.pi / 4, math.pi / 4)
    v = speed * np.array([math.cos(ang), math.sin(ang)])  # inward
    if kind == "enter":
        t0 = int(rng.integers(1, max(2, T // 2 + 1)))
        return boundary + v * (np.arange(T)[:, None] - t0)
    t1 = int(rng.integers(max(1, T // 2), T))
    return boundary - v * (np.arange(T)[:, None] - t1)  # reaches the boundary (fully outside) at t1


def _video_label_maps(rasters, H, W, keep):
    labels = []
    for per_obj in rasters:
        lab = np.full((H, W), -1, np.int16)
        for k in keep:
            r = per_obj[k]
            sl = r.clipped(H, W)
            if sl is not None:
                lab[sl[0], sl[1]][r.alpha[sl[2], sl[3]] >= 0.5] = k
        labels.append(lab)
    return labels


def make_video(seed: int, num_frames: int = 8, image_size=224, cfg: SceneConfig | None = None,
               split: str | None = None) -> Video:
    """Render a clip of moving, mutually occluding shapes with ground-truth masklets and phrases."""
    cfg = cfg or SceneConfig()
    split = split or cfg.split
    H, W = image_hw(image_size)
    side, T = min(H, W), int(num_frames)
    for attempt in range(100):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x71DE0, attempt]))
        bg = make_background(rng, H, W, pick(rng, cfg.background_kinds))
        n = int(rng.integers(cfg.video_min_objects, cfg.video_max_objects + 1))
        objs = sample_object_attrs(rng, n, cfg, split)
        geo = []  # per object: (diameter, positions (T,2), angles (T,))
        for attrs in objs:
            d = object_diameter(rng, attrs["size"], side)
            ext = UNIT_EXTENT[attrs["shape"]] * d + 1.0
            pos = _trajectory(rng, T, H, W, ext, float(rng.uniform(*cfg.speed_range)) * side, cfg)
            angles = rng.uniform(0, 2 * math.pi) + rng.uniform(-cfg.max_spin, cfg.max_spin) * np.arange(T)
            geo.append((d, pos, angles))
        rasters = [[rasterize(a["shape"], *g[1][t], g[0], float(g[2][t]), cfg.supersample)
                    for a, g in zip(objs, geo)] for t in range(T)]
        minpx = cfg.video_min_visible_pixels
        labels = _video_label_maps(rasters, H, W, range(len(objs)))
        keep = [k for k in range(len(objs)) if any((lab == k).sum() >= minpx for lab in labels)]
        if acceptable_objects([objs[k] for k in keep], cfg, split):
            break
    else:
        raise RuntimeError(f"could not generate a video for seed {seed}")
    labels = _video_label_maps(rasters, H, W, keep)  # dropping never-visible objects only reveals more
    apps = [sample_appearance(rng, a, g[0]) for a, g in zip(objs, geo)]
    if not cfg.shading:
        for app in apps:
            app.shade_amp = 0.0
    blur, quality = sample_degradation(rng, cfg)
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        canvas = bg.copy()
        for k in keep:
            composite(canvas, rasters[t][k], apps[k], *geo[k][1][t], float(geo[k][2][t]))
        frames[t] = degrade(to_uint8_hwc(canvas), blur, quality)
    objects = []
    for new_id, k in enumerate(keep):
        masks, boxes = [], []
        for t in range(T):
            m = labels[t] == k
            ok = m.sum() >= minpx
            masks.append(m if ok else None)
            boxes.append(mask_box(m) if ok else None)
        objects.append(VideoObject(new_id, dict(objs[k]), masks, boxes))
    attrs = [o.attributes for o in objects]
    return Video(int(seed), split, frames, objects, scene_datapoints(rng, attrs, cfg, split))


def write_video_dataset(out_dir, num_videos: int, seed: int = TRAIN_SEED, num_frames: int = 8, image_size=224,
                        cfg: SceneConfig | None = None, split: str = "train", progress: bool = True) -> Path:
    """Write ``frames/<video>/<t>.png`` and a YTVIS / SA-Co-VEval-style ``annotations.json``.

    ``videos``: id, video_name, file_names, height, width, length.  ``categories``: one per noun
    phrase.  ``annotations``: one masklet per (video, phrase, matching object) with per-frame
    ``segmentations`` / ``bboxes`` / ``areas`` (None when absent).  ``video_np_pairs``: every
    (video, phrase) datapoint incl. negatives (``num_masklets`` 0).
    """
    cfg = replace(cfg or SceneConfig(), split=split)
    out = Path(out_dir)
    videos, annotations, pairs, categories = [], [], [], {}
    for i in progress_bar(range(num_videos), desc=f"synthetic {split} videos", disable=not progress):
        vid = make_video(derive_seed(seed, i, 2), num_frames, image_size, cfg)
        T, H, W = vid.frames.shape[:3]
        name = f"video_{i:05d}"
        (out / "frames" / name).mkdir(parents=True, exist_ok=True)
        files = [f"{name}/{t:05d}.png" for t in range(T)]
        for t in range(T):
            atomic_png(out / "frames" / files[t], vid.frames[t])
        videos.append({"id": i, "video_name": name, "file_names": files, "height": H, "width": W, "length": T})
        for dp in vid.datapoints:
            cat = categories.setdefault(dp.phrase, len(categories) + 1)
            pairs.append({"id": len(pairs), "video_id": i, "category_id": cat, "noun_phrase": dp.phrase,
                          "num_masklets": len(dp.instance_ids)})
            for j in dp.instance_ids:
                o = vid.objects[j]
                annotations.append({
                    "id": len(annotations) + 1, "video_id": i, "category_id": cat, "noun_phrase": dp.phrase,
                    "object_id": o.obj_id, "iscrowd": 0, "height": H, "width": W,
                    "segmentations": [mask_to_rle(m) if m is not None else None for m in o.masks],
                    "bboxes": [box_xywh(b) if b is not None else None for b in o.boxes],
                    "areas": [int(m.sum()) if m is not None else None for m in o.masks],
                })
    path = out / "annotations.json"
    atomic_json(path, {"info": {"description": f"conceptseg synthetic videos ({split})", "seed": seed},
                        "videos": videos, "annotations": annotations,
                        "categories": [{"id": c, "name": p} for p, c in categories.items()],
                        "video_np_pairs": pairs})
    return path
