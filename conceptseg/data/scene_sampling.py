"""Scene configuration and the random draws shared by synthetic images and videos: which
objects (target concepts, their copies, distractors), their sizes, the photometric noise and the
noun-phrase datapoints. Everything is a pure function of a numpy Generator and the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phrases import (
    ATTRIBUTES,
    COLORS,
    DEFAULT_HELD_OUT_PAIRS,
    VALUES,
    Datapoint,
    make_datapoints,
)
from .shapes import BACKGROUND_KINDS, SIZE_RANGES

__all__ = ["SceneConfig", "derive_seed", "image_hw", "pick", "sample_object_attrs",
           "object_diameter", "mask_box", "sample_degradation", "scene_datapoints",
           "acceptable_objects"]


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
    # opt-in domain randomisation of images: a data.randomize.RandomizeConfig (that module
    # imports this one); None keeps the default bytes
    randomize: object | None = None

    def __post_init__(self):
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if not 1 <= self.max_attributes <= 4:
            raise ValueError("max_attributes must be in 1..4")
        if self.negative_mode not in ("easy", "hard", "mixed"):
            raise ValueError(f"bad negative_mode {self.negative_mode!r}")
        object.__setattr__(self, "held_out_pairs", frozenset(tuple(p) for p in self.held_out_pairs))


def derive_seed(*parts: int) -> int:
    """Stable 63-bit seed from a tuple of non-negative ints (e.g. (dataset_seed, index))."""
    a, b = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return int((int(a) << 31) ^ int(b))


def image_hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def pick(rng: np.random.Generator, seq):
    seq = list(seq)
    return seq[int(rng.integers(len(seq)))]


def _legal(attrs, cfg: SceneConfig, split: str) -> bool:
    return split == "test" or (attrs["color"], attrs["shape"]) not in cfg.held_out_pairs


def _fix(rng, attrs, cfg, split):
    while not _legal(attrs, cfg, split):
        attrs["color"] = pick(rng, COLORS)
    return attrs


def sample_object_attrs(rng: np.random.Generator, n: int, cfg: SceneConfig, split: str) -> list[dict]:
    """Target concepts (with copies) + distractors sharing attributes with them + random objects."""
    rand = lambda: _fix(rng, {a: pick(rng, VALUES[a]) for a in ATTRIBUTES}, cfg, split)  # noqa: E731
    targets = [rand() for _ in range(int(rng.integers(1, cfg.max_target_concepts + 1)))]
    if split == "test" and cfg.held_out_pairs:
        targets[0]["color"], targets[0]["shape"] = pick(rng, sorted(cfg.held_out_pairs))
    objs: list[dict] = []
    for t in targets:
        objs += [dict(t) for _ in range(int(rng.integers(1, cfg.max_copies + 1)))]
    objs = objs[: max(n - 1, 1)]  # leave room for at least one distractor
    while len(objs) < n:
        if rng.random() < cfg.p_distractor:
            o = dict(pick(rng, targets))
            for a in rng.choice(len(ATTRIBUTES), size=int(rng.integers(1, 3)), replace=False).tolist():
                o[ATTRIBUTES[a]] = pick(rng, [v for v in VALUES[ATTRIBUTES[a]] if v != o[ATTRIBUTES[a]]])
            objs.append(_fix(rng, o, cfg, split))
        else:
            objs.append(rand())
    return [objs[i] for i in rng.permutation(len(objs))]


def object_diameter(rng, size: str, side: int) -> float:
    lo, hi = SIZE_RANGES[size]
    return float(rng.uniform(lo, hi) * side)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def sample_degradation(rng, cfg: SceneConfig):
    do_blur, do_jpeg = rng.random() < cfg.p_blur, rng.random() < cfg.p_jpeg
    radius = float(rng.uniform(*cfg.blur_radius))
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return (radius if do_blur else None), (quality if do_jpeg else None)


def _must_include(objs, cfg: SceneConfig, split: str) -> list[dict]:
    if split != "test" or cfg.max_attributes < 2:
        return []
    pairs = sorted({(o["color"], o["shape"]) for o in objs} & cfg.held_out_pairs)
    return [{"color": c, "shape": s} for c, s in pairs][: cfg.num_positive]


def scene_datapoints(rng, objs, cfg: SceneConfig, split: str) -> list[Datapoint]:
    excluded = cfg.held_out_pairs if (split == "train" and cfg.exclude_held_out_phrases) else ()
    return make_datapoints(
        rng, objs, cfg.num_positive, cfg.num_negative, cfg.max_attributes, cfg.negative_mode,
        excluded, _must_include(objs, cfg, split),
    )


def acceptable_objects(objs, cfg: SceneConfig, split: str) -> bool:
    """A scene needs >= 1 object; a test scene needs >= 1 held-out (colour, shape) object."""
    if not objs:
        return False
    if split == "test" and cfg.held_out_pairs:
        return any((o["color"], o["shape"]) in cfg.held_out_pairs for o in objs)
    return True
