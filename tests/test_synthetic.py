"""Tests for the synthetic concept data engine (conceptseg.data.synthetic)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from conceptseg.data.phrases import (
    DEFAULT_HELD_OUT_PAIRS,
    format_phrase,
    matches,
    mentions_pair,
    parse_phrase,
)
from conceptseg.data.shapes import SIZE_RANGES
from conceptseg.data.synthetic import (
    SceneConfig,
    SyntheticConceptDataset,
    collate_concepts,
    derive_seed,
    make_scene,
    make_video,
    write_coco,
    write_video_dataset,
)

SIZE = 128  # small images keep the suite fast; geometry is relative to the image side


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _check_datapoints(datapoints, objects, held_out=None):
    assert datapoints, "every scene has datapoints"
    assert any(dp.presence for dp in datapoints)
    for dp in datapoints:
        q = parse_phrase(dp.phrase)
        assert format_phrase(q) == dp.phrase  # canonical order size -> fill -> color -> shape
        expected = tuple(i for i, a in enumerate(objects) if matches(q, a))
        assert dp.instance_ids == expected, (dp, objects)  # exhaustive and exact
        assert dp.presence == int(bool(expected))
        if held_out is not None:
            assert not mentions_pair(q, held_out), dp.phrase
    phrases = [dp.phrase for dp in datapoints]
    assert len(phrases) == len(set(phrases))


def test_phrase_grammar_roundtrip():
    q = {"shape": "hexagon", "color": "blue", "fill": "striped", "size": "large"}
    assert format_phrase(q) == "large striped blue hexagon"
    assert format_phrase({"color": "red"}) == "red object"
    assert format_phrase({"size": "small"}) == "small object"
    assert parse_phrase("small red star") == {"size": "small", "color": "red", "shape": "star"}
    assert parse_phrase("striped shape") == {"fill": "striped"}
    with pytest.raises(ValueError):
        parse_phrase("object")
    with pytest.raises(ValueError):
        parse_phrase("red blue star")


def test_scene_determinism():
    cfg = SceneConfig()
    a, b = make_scene(123, SIZE, cfg), make_scene(123, SIZE, cfg)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE, SIZE, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.datapoints == b.datapoints
    assert len(a.instances) == len(b.instances)
    for x, y in zip(a.instances, b.instances):
        assert x.attributes == y.attributes and x.box == y.box
        assert np.array_equal(x.mask, y.mask)
    c = make_scene(124, SIZE, cfg)
    assert c.image.tobytes() != a.image.tobytes()
    # non-square sizes work too
    d = make_scene(5, (96, 160), cfg)
    assert d.image.shape == (96, 160, 3) and d.instances[0].mask.shape == (96, 160)


def test_masks_boxes_and_phrases_consistent():
    cfg = SceneConfig()
    n_occluded = 0
    for seed in range(60):
        s = make_scene(seed, SIZE, cfg)
        H, W = s.image.shape[:2]
        cover = np.zeros((H, W), np.int32)
        for inst in s.instances:
            assert inst.mask.shape == (H, W) and inst.mask.dtype == bool
            assert inst.area == int(inst.mask.sum()) >= cfg.min_visible_pixels
            assert inst.visible_fraction >= cfg.min_visible_fraction - 1e-6
            assert inst.box == _tight_box(inst.mask)
            lo, hi = SIZE_RANGES[inst.attributes["size"]]
            assert lo * SIZE <= inst.diameter <= hi * SIZE
            cover += inst.mask
            n_occluded += inst.visible_fraction < 0.98
        assert cover.max() <= 1, "visible masks must be disjoint"
        assert cfg.min_objects >= 1 and 1 <= len(s.instances) <= cfg.max_objects
        _check_datapoints(s.datapoints, s.attributes, held_out=cfg.held_out_pairs)
        negs = [dp for dp in s.datapoints if not dp.presence]
        assert len(negs) >= 1
    assert n_occluded > 0, "some instances should be occluded or clipped"


def test_curriculum_knobs():
    cfg1 = SceneConfig(max_attributes=1)
    for seed in range(20):
        s = make_scene(seed, SIZE, cfg1)
        assert all(len(parse_phrase(dp.phrase)) == 1 for dp in s.datapoints)
        _check_datapoints(s.datapoints, s.attributes)
    hard = SceneConfig(negative_mode="hard")
    n_neg = n_swap = 0
    for seed in range(40):
        s = make_scene(seed, SIZE, hard)
        for dp in s.datapoints:
            if dp.presence:
                continue
            q = parse_phrase(dp.phrase)
            n_neg += 1
            # one-attribute swap: differs from some present object in exactly one named attribute
            n_swap += any(sum(a[k] != v for k, v in q.items()) == 1 for a in s.attributes)
    assert n_neg > 0 and n_swap / n_neg > 0.9
    with pytest.raises(ValueError):
        SceneConfig(negative_mode="medium")
    with pytest.raises(ValueError):
        SceneConfig(max_attributes=5)


def test_held_out_pairs_train_vs_test():
    cfg = SceneConfig()
    assert cfg.held_out_pairs == DEFAULT_HELD_OUT_PAIRS
    seen_test = set()
    for seed in range(200):
        tr = make_scene(seed, 64, cfg, split="train")
        pairs = {(a["color"], a["shape"]) for a in tr.attributes}
        assert not (pairs & cfg.held_out_pairs)
        assert not any(mentions_pair(parse_phrase(dp.phrase), cfg.held_out_pairs) for dp in tr.datapoints)
        te = make_scene(seed, 64, cfg, split="test")
        present = {(a["color"], a["shape"]) for a in te.attributes} & cfg.held_out_pairs
        assert present, "every test scene contains a held-out pair"
        seen_test |= present
        # and a phrase naming it is among the positives
        assert any(mentions_pair(parse_phrase(dp.phrase), present) for dp in te.datapoints if dp.presence)
        _check_datapoints(te.datapoints, te.attributes)
    assert seen_test == set(cfg.held_out_pairs)
    # custom held-out set
    custom = SceneConfig(held_out_pairs={("green", "square")})
    for seed in range(30):
        s = make_scene(seed, 64, custom)
        assert ("green", "square") not in {(a["color"], a["shape"]) for a in s.attributes}


def test_dataset_items_and_collate():
    ds = SyntheticConceptDataset(8, seed=3, image_size=SIZE, phrases_per_image=6, cache=True)
    assert len(ds) == 8
    item = ds[2]
    img = item["image"]
    assert img.shape == (3, SIZE, SIZE) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    assert len(item["queries"]) == 6
    assert any(q["presence"] == 1 for q in item["queries"]) and any(q["presence"] == 0 for q in item["queries"])
    scene = make_scene(derive_seed(3, 2), SIZE, ds.cfg)
    assert np.array_equal((img * 255).round().byte().permute(1, 2, 0).numpy(), scene.image)
    for q in item["queries"]:
        n = len(q["instance_ids"])
        assert q["boxes"].shape == (n, 4) and q["masks"].shape == (n, SIZE, SIZE) and q["masks"].dtype == torch.bool
        assert float(q["presence"]) == float(n > 0)
        if n:
            b = q["boxes"]
            assert (b >= 0).all() and (b <= 1).all()
            for box, m in zip(b, q["masks"]):
                x1, y1, x2, y2 = _tight_box(m.numpy())
                exp = torch.tensor([(x1 + x2) / 2 / SIZE, (y1 + y2) / 2 / SIZE, (x2 - x1) / SIZE, (y2 - y1) / SIZE])
                assert torch.allclose(box, exp, atol=1e-6)
        assert set(parse_phrase(q["text"]))  # parses
    # deterministic and cached
    again = ds[2]
    assert [q["text"] for q in again["queries"]] == [q["text"] for q in item["queries"]]
    batch = collate_concepts([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, SIZE, SIZE)
    assert len(batch["texts"]) == 12 and batch["image_index"].tolist() == [0] * 6 + [1] * 6
    assert batch["presence"].shape == (12,)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_concepts)
    assert next(iter(loader))["images"].shape == (4, 3, SIZE, SIZE)
    all_dp = SyntheticConceptDataset(2, seed=3, image_size=SIZE, phrases_per_image=None)[0]
    assert len(all_dp["queries"]) == len(make_scene(derive_seed(3, 0), SIZE).datapoints)


def test_write_coco_roundtrip(tmp_path):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    n = 6
    path = write_coco(tmp_path / "coco", n, seed=11, image_size=SIZE, split="test", progress=False)
    assert path.exists() and not list(path.parent.glob(".*tmp*"))
    coco = COCO(str(path))
    assert coco.dataset["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    cfg = SceneConfig(split="test")
    scenes = [make_scene(derive_seed(11, i), SIZE, cfg) for i in range(n)]
    assert len(coco.imgs) == sum(len(s.datapoints) for s in scenes)
    n_neg = 0
    for img in coco.dataset["images"]:
        s = scenes[img["original_img_id"]]
        assert (img["height"], img["width"]) == (SIZE, SIZE)
        assert (tmp_path / "coco" / img["file_name"]).exists()
        dp = next(d for d in s.datapoints if d.phrase == img["text_input"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert len(anns) == len(dp.instance_ids)
        n_neg += not anns
        for ann, j in zip(sorted(anns, key=lambda a: a["instance_index"]), dp.instance_ids):
            inst = s.instances[j]
            assert ann["iscrowd"] == 0 and ann["category_id"] == 1 and isinstance(ann["segmentation"]["counts"], str)
            decoded = mask_util.decode(ann["segmentation"]).astype(bool)
            assert np.array_equal(decoded, inst.mask)
            assert np.array_equal(coco.annToMask(ann).astype(bool), inst.mask)
            x1, y1, x2, y2 = inst.box
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["area"] == int(inst.mask.sum())
    assert n_neg > 0
    from PIL import Image

    first = coco.dataset["images"][0]
    png = np.asarray(Image.open(tmp_path / "coco" / first["file_name"]).convert("RGB"))
    assert np.array_equal(png, scenes[first["original_img_id"]].image)


def test_video_masklets(tmp_path):
    cfg = SceneConfig()
    T = 10
    v1, v2 = make_video(7, T, SIZE, cfg), make_video(7, T, SIZE, cfg)
    assert v1.frames.tobytes() == v2.frames.tobytes() and v1.datapoints == v2.datapoints
    assert make_video(8, T, SIZE, cfg).frames.tobytes() != v1.frames.tobytes()
    n_absent = n_enter = 0
    for seed in range(12):
        v = make_video(seed, T, SIZE, cfg)
        assert v.frames.shape == (T, SIZE, SIZE, 3) and v.frames.dtype == np.uint8
        for i, o in enumerate(v.objects):
            assert o.obj_id == i and len(o.masks) == T and len(o.boxes) == T
            present = [m is not None for m in o.masks]
            assert any(present)
            n_absent += not all(present)
            n_enter += (not present[0]) and present[-1]
            for m, b in zip(o.masks, o.boxes):
                assert (m is None) == (b is None)
                if m is not None:
                    assert m.shape == (SIZE, SIZE) and m.sum() >= cfg.video_min_visible_pixels
                    assert b == _tight_box(m)
        for t in range(T):
            stack = [o.masks[t] for o in v.objects if o.masks[t] is not None]
            if stack:
                assert np.sum(stack, 0).max() <= 1  # depth-ordered visible masks are disjoint
        _check_datapoints(v.datapoints, [o.attributes for o in v.objects], held_out=cfg.held_out_pairs)
    assert n_absent > 0 and n_enter > 0, "some objects should enter / leave during clips"
    tv = make_video(3, T, SIZE, cfg, split="test")
    assert {(o.attributes["color"], o.attributes["shape"]) for o in tv.objects} & cfg.held_out_pairs

    from pycocotools import mask as mask_util

    path = write_video_dataset(tmp_path / "vid", 2, seed=5, num_frames=6, image_size=SIZE, progress=False)
    data = json.loads(path.read_text())
    assert len(data["videos"]) == 2 and all(len(v["file_names"]) == 6 for v in data["videos"])
    for vd in data["videos"]:
        assert all((tmp_path / "vid" / "frames" / f).exists() for f in vd["file_names"])
    cats = {c["id"]: c["name"] for c in data["categories"]}
    vids = [make_video(derive_seed(5, i, 2), 6, SIZE, SceneConfig()) for i in range(2)]
    assert len(data["video_np_pairs"]) == sum(len(v.datapoints) for v in vids)
    assert any(p["num_masklets"] == 0 for p in data["video_np_pairs"])
    for ann in data["annotations"]:
        o = vids[ann["video_id"]].objects[ann["object_id"]]
        assert cats[ann["category_id"]] == ann["noun_phrase"]
        assert matches(parse_phrase(ann["noun_phrase"]), o.attributes)
        for rle, m in zip(ann["segmentations"], o.masks):
            assert (rle is None) == (m is None)
            if m is not None:
                assert np.array_equal(mask_util.decode(rle).astype(bool), m)


def test_generation_speed(capsys):
    cfg = SceneConfig()
    make_scene(0, 224, cfg)
    n = 50
    t0 = time.perf_counter()
    for i in range(n):
        make_scene(1000 + i, 224, cfg)
    ms = (time.perf_counter() - t0) / n * 1e3
    t0 = time.perf_counter()
    make_video(1, 8, 224, cfg)
    vms = (time.perf_counter() - t0) * 1e3
    with capsys.disabled():
        print(f"\n[synthetic] make_scene 224px: {ms:.2f} ms/image; make_video 8x224px: {vms:.1f} ms")
    assert ms > 0
