"""One synthetic concept scene: shape instances with attributes placed with controlled
occlusion on a textured background, rendered with blur and JPEG noise, with exhaustive
noun-phrase datapoints (positives list every matching instance; negatives match none).

The same seed and config give identical bytes. ``held_out_pairs`` (colour, shape) combinations
are never rendered in ``split="train"`` scenes (nor named by train negatives); every
``split="test"`` scene contains at least one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .phrases import Datapoint
from .randomize import randomize_scene
from .scene_sampling import (SceneConfig, acceptable_objects, image_hw, mask_box, object_diameter,
                             pick, sample_degradation, sample_object_attrs, scene_datapoints)
from .shapes import (composite, degrade, make_background, rasterize, sample_appearance,
                     to_uint8_hwc)

__all__ = ["Instance", "Scene", "make_scene"]


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
    for attrs in sample_object_attrs(rng, n, cfg, split):
        d = object_diameter(rng, attrs["size"], side)
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
    H, W = image_hw(image_size)
    for attempt in range(100):  # deterministic re-draws in the (rare) case placement dropped too much
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E, attempt]))
        bg = make_background(rng, H, W, pick(rng, cfg.background_kinds))
        placed, label = _place_objects(rng, H, W, cfg, split)
        if acceptable_objects([p[0] for p in placed], cfg, split):
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
            Instance(dict(attrs), mask, mask_box(mask), int(mask.sum()), float(mask.sum() / max(r.full_area, 1)),
                     (float(cx), float(cy)), d, angle)
        )
    image = to_uint8_hwc(canvas)
    image = degrade(image, *sample_degradation(rng, cfg))
    objs = [inst.attributes for inst in instances]
    scene = Scene(int(seed), split, image, instances, scene_datapoints(rng, objs, cfg, split))
    return scene if cfg.randomize is None else randomize_scene(scene, cfg.randomize)
