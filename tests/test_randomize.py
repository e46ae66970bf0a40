"""Opt-in domain randomisation (conceptseg/data/randomize.py): the default engine output is
unchanged, and randomisation changes what is not the concept while each object's colour stays
within its name."""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage

from conceptseg.data.phrases import COLORS
from conceptseg.data.randomize import COLOR_BOUNDS, RandomizeConfig, jitter_in_name, reads_as
from conceptseg.data.scene import make_scene
from conceptseg.data.scene_sampling import SceneConfig
from conceptseg.data.shapes import COLOR_RGB

#: sha256 of default scenes rendered by the engine before randomisation existed (commit 283f187)
DEFAULT_SCENES_SHA256 = "877f93e354547c3308bc13f67b12fd50a7a9bbb6f143bed94e1af9743b571817"
QUIET = RandomizeConfig(p_blur=0.0, p_noise=0.0, p_jpeg=0.0, p_outline=0.0)


def test_default_scene_output_is_unchanged():
    h = hashlib.sha256()
    for seed in (0, 1, 2, 12345):
        s = make_scene(seed, 128)
        h.update(s.image.tobytes())
        for inst in s.instances:
            h.update(inst.mask.tobytes())
            h.update(repr(inst.box).encode())
        h.update(repr([(d.phrase, d.instance_ids) for d in s.datapoints]).encode())
    h.update(make_scene(7, (96, 160), SceneConfig(split="test")).image.tobytes())
    assert h.hexdigest() == DEFAULT_SCENES_SHA256
    assert SceneConfig().randomize is None


def test_jittered_colours_stay_within_their_names():
    rng = np.random.default_rng(0)
    cfg = RandomizeConfig()
    for name in COLORS:
        assert reads_as(COLOR_RGB[name], name), f"the engine's base {name} is inside its bounds"
        for _ in range(300):
            base = np.clip(np.asarray(COLOR_RGB[name], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
            rgb = jitter_in_name(rng, name, base, cfg)
            assert reads_as(rgb, name), (name, rgb)
            assert sum(reads_as(rgb, other) for other in COLOR_BOUNDS) == 1, "bounds are disjoint"


def test_randomize_changes_only_what_is_not_the_concept():
    changed = 0
    for seed in range(6):
        base = make_scene(seed, 160)
        rnd = make_scene(seed, 160, SceneConfig(randomize=QUIET))
        assert rnd.image.shape == base.image.shape and rnd.image.dtype == np.uint8
        assert [(d.phrase, d.instance_ids) for d in rnd.datapoints] == \
            [(d.phrase, d.instance_ids) for d in base.datapoints]
        assert [i.attributes for i in rnd.instances] == [i.attributes for i in base.instances]
        for inst in rnd.instances:
            ys, xs = np.nonzero(inst.mask)
            assert inst.area == inst.mask.sum() >= QUIET.min_pixels
            assert inst.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            core = ndimage.binary_erosion(inst.mask, iterations=2)
            if inst.attributes["fill"] == "solid" and core.sum() >= 10:
                rgb = np.median(rnd.image[core], axis=0)
                assert reads_as(rgb, inst.attributes["color"]), (seed, inst.attributes, rgb)
        bg_r = ~np.any([i.mask for i in rnd.instances], axis=0)
        bg_b = ~np.any([i.mask for i in base.instances], axis=0)
        stats = lambda img, m: np.concatenate([img[m].mean(0), img[m].std(0)])  # noqa: E731
        changed += np.abs(stats(rnd.image, bg_r) - stats(base.image, bg_b)).max() > 3
    assert changed >= 5, "the background's statistics change"


def test_randomize_is_deterministic_and_varies_scale():
    cfg = SceneConfig(randomize=RandomizeConfig())
    a, b = make_scene(3, 128, cfg), make_scene(3, 128, cfg)
    assert a.image.tobytes() == b.image.tobytes()
    areas = [inst.area / 128 ** 2 for s in range(12) for inst in make_scene(s, 128, cfg).instances]
    base = [inst.area / 128 ** 2 for s in range(12) for inst in make_scene(s, 128).instances]
    assert min(areas) < 0.5 * min(base), "objects get smaller relative to the image"
