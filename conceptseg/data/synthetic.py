"""Synthetic concept data engine: procedurally rendered shape scenes with exhaustive concept labels.

Each scene holds several shape instances with attributes (size, fill, color, shape) on a textured
background, with occlusion, distractors sharing attributes with the target concepts, blur and JPEG
noise.  Each scene carries noun-phrase datapoints: positives with the exhaustive list of matching
instances, and negatives (no matching instance; presence target 0).  Everything is a pure function
of the seed and the config, so the same seed + config gives identical bytes.

``held_out_pairs`` (colour, shape) combinations are never rendered in ``split="train"`` scenes (nor
named by train negatives); every ``split="test"`` scene contains at least one of them.

Public API: :class:`SceneConfig`, :func:`make_scene`, :class:`SyntheticConceptDataset`,
:func:`collate_concepts`, :func:`write_coco`, :func:`make_video`, :func:`write_video_dataset`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..atomic import atomic_write
from ..ops.masks import rle_encode
from .phrases import (
    ATTRIBUTES,
    COLORS,
    DEFAULT_HELD_OUT_PAIRS,
    VALUES,
    Datapoint,
    make_datapoints,
)
from .shapes import (
    BACKGROUND_KINDS,
    SIZE_RANGES,
    composite,
    degrade,
    make_background,
    rasterize,
    sample_appearance,
    to_uint8_hwc,
)

__all__ = [
    "DEFAULT_HELD_OUT_PAIRS", "SceneConfig", "Instance", "Scene", "make_scene", "derive_seed",
    "SyntheticConceptDataset", "collate_concepts", "write_coco", "Datapoint", "mask_to_rle",
    "box_xyxy_to_cxcywh_norm",
]


@dataclass(frozen=True)
class SceneConfig:
    # scene content
    min_objects: int = 3
    max_objects: int = 6
    max_target_concepts: int = 3  # concepts instantiated several times (exhaustivity matters)
    max_copies: int = 3
    p_distractor: float = 0.7  # non-target objects: 1-2 attribute swaps of a target (else random)
    # geometry / occlusion
    supersample: int = 4
    center_margin: float = 0.1  # object centres in [m, 1-m] of the image side (edges may clip)
    min_visible_fraction: float = 0.5
    min_visible_pixels: int = 30
    placement_tries: int = 20
    shading: bool = True
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    # photometric noise
    p_blur: float = 0.3
    blur_radius: tuple[float, float] = (0.3, 1.0)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    # phrases / curriculum
    max_attributes: int = 4  # 1..4 attributes per phrase
    negative_mode: str = "mixed"  # 'easy' | 'hard' | 'mixed'
    num_positive: int = 4
    num_negative: int = 4
    # compositional generalisation
    held_out_pairs: frozenset = DEFAULT_HELD_OUT_PAIRS
    split: str = "train"  # 'train' | 'test'
    exclude_held_out_phrases: bool = True  # train negatives never name a held-out pair
    # video
    video_min_objects: int = 3
    video_max_objects: int = 6
    speed_range: tuple[float, float] = (0.01, 0.04)  # fraction of the image side per frame
    max_spin: float = 0.08  # radians per frame
    p_enter: float = 0.25
    p_leave: float = 0.25
    video_min_visible_pixels: int = 4

    def __post_init__(self):
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if not 1 <= self.max_attributes <= 4:
            raise ValueError("max_attributes must be in 1..4")
        if self.negative_mode not in ("easy", "hard", "mixed"):
            raise ValueError(f"bad negative_mode {self.negative_mode!r}")
        object.__setattr__(self, "held_out_pairs", frozenset(tuple(p) for p in self.held_out_pairs))


@dataclass
class Instance:
    attributes: dict[str, str]
    mask: np.ndarray  # (H, W) bool, visible part
    box: tuple[float, float, float, float]  # xyxy pixels of the visible mask (x2, y2 exclusive)
    area: int
    visible_fraction: float
    center: tuple[float, float]
    diameter: float
    angle: float


@dataclass
class Scene:
    seed: int
    split: str
    image: np.ndarray  # (H, W, 3) uint8
    instances: list[Instance]
    datapoints: list[Datapoint] = field(default_factory=list)

    @property
    def attributes(self) -> list[dict[str, str]]:
        return [inst.attributes for inst in self.instances]


def derive_seed(*parts: int) -> int:
    """Stable 63-bit seed from a tuple of non-negative ints (e.g. (dataset_seed, index))."""
    a, b = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return int((int(a) << 31) ^ int(b))


def _hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _pick(rng: np.random.Generator, seq):
    seq = list(seq)
    return seq[int(rng.integers(len(seq)))]


def _legal(attrs, cfg: SceneConfig, split: str) -> bool:
    return split == "test" or (attrs["color"], attrs["shape"]) not in cfg.held_out_pairs


def _fix(rng, attrs, cfg, split):
    while not _legal(attrs, cfg, split):
        attrs["color"] = _pick(rng, COLORS)
    return attrs


def _sample_object_attrs(rng: np.random.Generator, n: int, cfg: SceneConfig, split: str) -> list[dict]:
    """Target concepts (with copies) + distractors sharing attributes with them + random objects."""
    rand = lambda: _fix(rng, {a: _pick(rng, VALUES[a]) for a in ATTRIBUTES}, cfg, split)  # noqa: E731
    targets = [rand() for _ in range(int(rng.integers(1, cfg.max_target_concepts + 1)))]
    if split == "test" and cfg.held_out_pairs:
        targets[0]["color"], targets[0]["shape"] = _pick(rng, sorted(cfg.held_out_pairs))
    objs: list[dict] = []
    for t in targets:
        objs += [dict(t) for _ in range(int(rng.integers(1, cfg.max_copies + 1)))]
    objs = objs[: max(n - 1, 1)]  # leave room for at least one distractor
    while len(objs) < n:
        if rng.random() < cfg.p_distractor:
            o = dict(_pick(rng, targets))
            for a in rng.choice(len(ATTRIBUTES), size=int(rng.integers(1, 3)), replace=False).tolist():
                o[ATTRIBUTES[a]] = _pick(rng, [v for v in VALUES[ATTRIBUTES[a]] if v != o[ATTRIBUTES[a]]])
            objs.append(_fix(rng, o, cfg, split))
        else:
            objs.append(rand())
    return [objs[i] for i in rng.permutation(len(objs))]


def _diameter(rng, size: str, side: int) -> float:
    lo, hi = SIZE_RANGES[size]
    return float(rng.uniform(lo, hi) * side)


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _sample_degradation(rng, cfg: SceneConfig):
    do_blur, do_jpeg = rng.random() < cfg.p_blur, rng.random() < cfg.p_jpeg
    radius = float(rng.uniform(*cfg.blur_radius))
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return (radius if do_blur else None), (quality if do_jpeg else None)


def _must_include(objs, cfg: SceneConfig, split: str) -> list[dict]:
    if split != "test" or cfg.max_attributes < 2:
        return []
    pairs = sorted({(o["color"], o["shape"]) for o in objs} & cfg.held_out_pairs)
    return [{"color": c, "shape": s} for c, s in pairs][: cfg.num_positive]


def _datapoints(rng, objs, cfg: SceneConfig, split: str) -> list[Datapoint]:
    excluded = cfg.held_out_pairs if (split == "train" and cfg.exclude_held_out_phrases) else ()
    return make_datapoints(
        rng, objs, cfg.num_positive, cfg.num_negative, cfg.max_attributes, cfg.negative_mode,
        excluded, _must_include(objs, cfg, split),
    )


def _acceptable(objs, cfg: SceneConfig, split: str) -> bool:
    """A scene needs >= 1 object; a test scene needs >= 1 held-out (colour, shape) object."""
    if not objs:
        return False
    if split == "test" and cfg.held_out_pairs:
        return any((o["color"], o["shape"]) in cfg.held_out_pairs for o in objs)
    return True


def _place_objects(rng, H: int, W: int, cfg: SceneConfig, split: str):
    """Sequential placement; a candidate is rejected if it (after edge clipping) or any object it
    covers would keep < min_visible_fraction of its area or < min_visible_pixels pixels."""
    side = min(H, W)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    label = np.full((H, W), -1, dtype=np.int16)
    placed: list[tuple] = []  # (attrs, raster, cx, cy, d, angle)
    vis: list[int] = []
    need: list[float] = []  # minimum visible pixels to keep each placed object
    m = cfg.center_margin
    for attrs in _sample_object_attrs(rng, n, cfg, split):
        d = _diameter(rng, attrs["size"], side)
        for _ in range(cfg.placement_tries):
            cx, cy = rng.uniform(m * W, (1 - m) * W), rng.uniform(m * H, (1 - m) * H)
            angle = float(rng.uniform(0, 2 * math.pi))
            r = rasterize(attrs["shape"], cx, cy, d, angle, cfg.supersample)
            sl = r.clipped(H, W)
            if sl is None:
                continue
            crop = r.alpha[sl[2], sl[3]] >= 0.5
            own_need = max(cfg.min_visible_pixels, cfg.min_visible_fraction * r.full_area)
            if crop.sum() < own_need:
                continue
            under = label[sl[0], sl[1]][crop]
            covered = np.bincount(under.astype(np.int64) + 1, minlength=len(placed) + 1)[1:]
            if any(vis[j] - covered[j] < need[j] for j in np.flatnonzero(covered)):
                continue
            label[sl[0], sl[1]][crop] = len(placed)
            for j in np.flatnonzero(covered):
                vis[j] -= int(covered[j])
            vis.append(int(crop.sum()))
            need.append(own_need)
            placed.append((attrs, r, cx, cy, d, angle))
            break
    return placed, label


def make_scene(seed: int, image_size=224, cfg: SceneConfig | None = None, split: str | None = None) -> Scene:
    """Render one scene.  ``image_size``: int or (H, W).  ``split`` overrides ``cfg.split``."""
    cfg = cfg or SceneConfig()
    split = split or cfg.split
    H, W = _hw(image_size)
    for attempt in range(100):  # deterministic re-draws in the (rare) case placement dropped too much
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E, attempt]))
        bg = make_background(rng, H, W, _pick(rng, cfg.background_kinds))
        placed, label = _place_objects(rng, H, W, cfg, split)
        if _acceptable([p[0] for p in placed], cfg, split):
            break
    else:
        raise RuntimeError(f"could not place objects for seed {seed}; check SceneConfig sizes / image_size")
    canvas = bg
    instances = []
    for k, (attrs, r, cx, cy, d, angle) in enumerate(placed):
        app = sample_appearance(rng, attrs, d)
        if not cfg.shading:
            app.shade_amp = 0.0
        composite(canvas, r, app, cx, cy, angle)
        mask = label == k
        instances.append(
            Instance(dict(attrs), mask, _box_of(mask), int(mask.sum()), float(mask.sum() / max(r.full_area, 1)),
                     (float(cx), float(cy)), d, angle)
        )
    image = to_uint8_hwc(canvas)
    image = degrade(image, *_sample_degradation(rng, cfg))
    objs = [inst.attributes for inst in instances]
    return Scene(int(seed), split, image, instances, _datapoints(rng, objs, cfg, split))


# --------------------------------------------------------------------------------- torch dataset


def box_xyxy_to_cxcywh_norm(boxes: np.ndarray, H: int, W: int) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / (2 * W), (b[:, 1] + b[:, 3]) / (2 * H),
                     (b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H], 1)


class SyntheticConceptDataset(Dataset):
    """On-the-fly synthetic PCS dataset.  Item ``i`` is ``make_scene(derive_seed(seed, i))``.

    Each item: ``{"image": float (3,H,W) in [0,1], "image_id": i, "queries": [{"text": str,
    "boxes": (N,4) normalized cxcywh, "masks": (N,H,W) bool, "presence": float 0/1,
    "instance_ids": (N,) long}, ...]}`` with ``phrases_per_image`` queries (positives and
    negatives balanced by ``positive_fraction`` when available; sampled with replacement if the
    scene has fewer datapoints; all datapoints if ``None``).
    """

    def __init__(self, num_images: int, seed: int = 0, image_size=224, cfg: SceneConfig | None = None,
                 phrases_per_image: int | None = 4, split: str | None = None, cache: bool = False,
                 positive_fraction: float = 0.5):
        self.num_images, self.seed, self.image_size = int(num_images), int(seed), image_size
        self.cfg = replace(cfg or SceneConfig(), **({"split": split} if split else {}))
        self.phrases_per_image, self.positive_fraction = phrases_per_image, positive_fraction
        self._cache: dict[int, Scene] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int) -> Scene:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        s = make_scene(derive_seed(self.seed, index), self.image_size, self.cfg)
        if self._cache is not None:
            self._cache[index] = s
        return s

    def _select(self, scene: Scene, index: int) -> list[Datapoint]:
        dps, P = scene.datapoints, self.phrases_per_image
        if P is None:
            return list(dps)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, 1]))
        pos = [d for d in dps if d.presence]
        neg = [d for d in dps if not d.presence]
        n_pos = min(len(pos), int(round(P * self.positive_fraction)))
        n_neg = min(len(neg), P - n_pos)
        n_pos = min(len(pos), P - n_neg)
        out = [pos[i] for i in rng.permutation(len(pos))[:n_pos]] + [neg[i] for i in rng.permutation(len(neg))[:n_neg]]
        while len(out) < P and dps:
            out.append(dps[int(rng.integers(len(dps)))])
        return [out[i] for i in rng.permutation(len(out))]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        scene = self.scene(index)
        H, W = scene.image.shape[:2]
        chw = np.empty((3, H, W), np.float32)
        for k in range(3):  # numpy HWC uint8 -> CHW float (cheaper than torch permute + float on busy CPUs)
            np.multiply(scene.image[..., k], np.float32(1.0 / 255.0), out=chw[k])
        image = torch.from_numpy(chw)
        queries = []
        for dp in self._select(scene, index):
            ids = list(dp.instance_ids)
            boxes = box_xyxy_to_cxcywh_norm([scene.instances[i].box for i in ids], H, W)
            masks = np.stack([scene.instances[i].mask for i in ids]) if ids else np.zeros((0, H, W), bool)
            queries.append({"text": dp.phrase, "boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks),
                            "presence": torch.tensor(float(dp.presence)),
                            "instance_ids": torch.tensor(ids, dtype=torch.long)})
        return {"image": image, "image_id": index, "queries": queries}


def collate_concepts(batch: list[dict]) -> dict:
    """Stack images; flatten queries to one (image, phrase) pair each with ``image_index``."""
    texts, targets, image_index = [], [], []
    for b, item in enumerate(batch):
        for q in item["queries"]:
            texts.append(q["text"])
            targets.append({k: v for k, v in q.items() if k != "text"})
            image_index.append(b)
    return {"images": torch.stack([it["image"] for it in batch]), "image_ids": [it["image_id"] for it in batch],
            "texts": texts, "targets": targets, "image_index": torch.tensor(image_index, dtype=torch.long),
            "presence": torch.stack([t["presence"] for t in targets]) if targets else torch.zeros(0)}


# ------------------------------------------------------------------------------ dataset writers


def mask_to_rle(mask: np.ndarray) -> dict:
    """H x W bool -> COCO RLE with str counts."""
    return rle_encode(mask[None])[0]


def _atomic_png(path: Path, image: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def _atomic_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj)))


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def write_coco(out_dir, num_images: int, seed: int = 0, image_size=224, cfg: SceneConfig | None = None,
               split: str = "train", progress: bool = True) -> Path:
    """Write ``images/*.png`` and an SA-Co/Gold-style ``annotations.json``; returns the JSON path.

    ``images`` entries are (image, noun phrase) datapoints (``text_input``, ``original_img_id``);
    negatives have no annotations.  Image ``i`` equals ``SyntheticConceptDataset(seed=seed)[i]``.
    """
    from tqdm import tqdm

    cfg = replace(cfg or SceneConfig(), split=split)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"synthetic {split} images", disable=not progress):
        scene = make_scene(derive_seed(seed, i), image_size, cfg)
        H, W = scene.image.shape[:2]
        fname = f"images/{i:06d}.png"
        _atomic_png(out / fname, scene.image)
        rles = {}
        for dp in scene.datapoints:
            dp_id = len(images) + 1
            images.append({"id": dp_id, "file_name": fname, "height": H, "width": W, "text_input": dp.phrase,
                           "original_img_id": i, "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1})
            for j in dp.instance_ids:
                inst = scene.instances[j]
                if j not in rles:
                    rles[j] = mask_to_rle(inst.mask)
                annotations.append({"id": len(annotations) + 1, "image_id": dp_id, "bbox": _xywh(inst.box),
                                    "area": int(inst.area), "segmentation": rles[j], "iscrowd": 0,
                                    "category_id": 1, "instance_index": j})
    info = {"description": f"conceptseg synthetic shapes ({split})", "seed": seed, "split": split,
            "held_out_pairs": sorted(map(list, cfg.held_out_pairs))}
    path = out / "annotations.json"
    _atomic_json(path, {"info": info, "images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "object", "supercategory": "object"}]})
    return path


def __getattr__(name: str):
    """The video half lives in synthetic_video; keep ``synthetic.make_video`` etc. working."""
    from . import synthetic_video

    if name in synthetic_video.__all__:
        return getattr(synthetic_video, name)
    raise AttributeError(name)

