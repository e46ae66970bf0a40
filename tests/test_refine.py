"""ImagePredictor.refine: SAM-style interactive masks with the tracker heads on the cached image
encoding, and refinement of one instance found by a concept prompt."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.build import build_video_model, load_video_model
from conceptseg.errors import InputError
from conceptseg.inference.image import ImagePredictor
from conceptseg.inference.image_refine import fill_small_background as _fill_small_background

from .conftest import reference


@pytest.fixture(scope="module")
def video_model():
    return load_video_model(reference("video_model_state_dict.pt"))


@pytest.fixture(scope="module")
def image():
    return np.asarray(Image.open(reference("video_frames") / "0.png").convert("RGB")).copy()


@pytest.fixture(scope="module")
def predictor(video_model, image):
    return ImagePredictor(video_model).set_image(image)


def _present(model):
    """A copy whose object-score head always says "present" (the fixture's says absent), so
    that the tracker's gated outputs can be compared with refine's raw ones."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.tracker.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 100.0
    return m


def test_concept_predictions_unchanged_by_the_tracker(video_model, image, predictor):
    plain = ImagePredictor(video_model.detector).set_image(image)
    a, b = plain.predict(text="red square"), predictor.predict(text="red square")
    assert torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores)
    assert torch.equal(a.boxes, b.boxes)
    with pytest.raises(InputError, match="tracker"):
        plain.refine(points=[(10, 10)])


def test_refine_matches_the_tracker_sam_heads(video_model, image):
    model = _present(video_model)
    pred = ImagePredictor(model).set_image(image)
    h, w = image.shape[:2]
    s = model.tracker_config.image_size
    for kw, multimask in (({"points": [(30, 40)], "labels": [1]}, True),
                          ({"points": [(30, 40), (90, 70)], "labels": [1, 0]}, False),
                          ({"box": (10, 5, 70, 60), "points": [(40, 30)]}, False)):
        r = pred.refine(multimask=multimask, **kw)
        coords = torch.tensor(kw["points"], dtype=torch.float32) * torch.tensor([s / w, s / h])
        labels = torch.tensor(kw.get("labels", [1] * len(kw["points"])))
        box = None
        if "box" in kw:
            box = torch.tensor([kw["box"]], dtype=torch.float32) * torch.tensor([s / w, s / h] * 2)
        with torch.inference_mode():
            ref = model.tracker.predict_masks(pred._tracker_features(), points=coords[None],
                                              labels=labels[None], box=box, multimask=multimask)
        assert bool((ref.object_score_logits > 0).all())
        order = torch.argsort(ref.ious[0], descending=True, stable=True)
        assert torch.equal(r.scores, ref.ious[0][order])
        assert torch.equal(r.logits, ref.multimasks[0][order].clamp(-32, 32))
        assert r.masks.shape == (len(order), h, w) and r.masks.dtype == torch.bool
        assert len(r) == (3 if multimask else 1)


def test_feeding_back_logits_and_mask_only_prompts(predictor):
    r = predictor.refine(points=[(30, 40)], multimask=True)
    assert r.scores.tolist() == sorted(r.scores.tolist(), reverse=True)
    r2 = predictor.refine(points=[(30, 40), (100, 80)], labels=[1, 0], mask_input=r.logits[0])
    r3 = predictor.refine(points=[(30, 40), (100, 80)], labels=[1, 0])
    assert not torch.equal(r2.logits, r3.logits)  # the mask input is used
    only = predictor.refine(mask_input=r.logits[0])
    assert len(only) == 1
    # any-size mask logits are resized to the decoder's mask input
    big = torch.nn.functional.interpolate(r.logits[:1, None], size=(96, 128))[0, 0]
    assert len(predictor.refine(points=[(30, 40)], mask_input=big)) == 1


def test_instance_refinement_uses_its_box_and_mask(predictor):
    found = predictor.predict(text="red square")
    assert len(found) > 0
    r = predictor.refine(instance=(found, 0), points=[(5, 5)], labels=[0])
    h, w = found.image_size
    box = [min(max(v, 0), m) for v, m in zip(found.boxes[0].tolist(), (w, h, w, h))]
    mask = found.masks[0].float() * 20 - 10
    same = predictor.refine(box=box, mask_input=mask, points=[(5, 5)], labels=[0])
    assert torch.equal(r.logits, same.logits) and torch.equal(r.masks, same.masks)
    no_mask = predictor.refine(box=box, points=[(5, 5)], labels=[0])
    assert not torch.equal(r.logits, no_mask.logits)


def test_tracker_features_are_lazy_and_cached(video_model, image):
    pred = ImagePredictor(video_model.detector, tracker=video_model).set_image(image)
    assert pred._trk_feats is None and pred._trunk_out is not None
    pred.refine(points=[(10, 10)])
    feats = pred._trk_feats
    assert feats is not None and pred._trunk_out is None  # the trunk output is dropped
    pred.refine(points=[(20, 10)])
    assert pred._trk_feats is feats
    pred.set_image(image)  # a new image: recomputed on demand
    assert pred._trk_feats is None


def test_refine_bad_input(predictor, image):
    found = predictor.predict(text="red square")
    bad = [
        (dict(), "give points"),
        (dict(points=[(200, 10)]), "outside"),
        (dict(points=[(10, 10)], labels=[1, 1]), "labels"),
        (dict(points=[(10, 10)], labels=[3]), "labels"),
        (dict(labels=[1]), "without points"),
        (dict(box=(10, 10, 5, 20)), "x0 < x1"),
        (dict(box=(0, 0, 500, 20)), "outside"),
        (dict(mask_input=np.full((4, 4), np.nan)), "non-finite"),
        (dict(instance=(found, 99)), "out of range"),
        (dict(instance=("x", 0)), "Prediction"),
    ]
    for kw, msg in bad:
        with pytest.raises(InputError, match=msg):
            predictor.refine(**kw)
    fresh = ImagePredictor(build_video_model("test", seed=0))
    with pytest.raises(InputError, match="set_image"):
        fresh.refine(points=[(1, 1)])


def test_hole_filling_like_the_official_predictor():
    m = torch.full((1, 20, 20), 5.0)
    m[0, 8:10, 8:10] = -3.0  # a 4-pixel hole
    m[0, 0:2, 0:2] = -3.0  # a small background patch on the border: filled too
    m[0, 12:20, 12:20] = -3.0  # 64 pixels: kept
    out = _fill_small_background(m, 16, 10.0)
    assert (out[0, 8:10, 8:10] == 10.0).all() and (out[0, 0:2, 0:2] == 10.0).all()
    assert (out[0, 12:20, 12:20] == -3.0).all()
    assert torch.equal(_fill_small_background(m, 0, 10.0), m)


def test_refine_on_a_small_random_model():
    model = build_video_model("test", seed=0)
    pred = ImagePredictor(model).set_image(np.zeros((30, 50, 3), np.uint8))
    r = pred.refine(points=[(25, 15)], multimask=True)
    assert r.masks.shape == (3, 30, 50)
    r = pred.refine(box=(5, 5, 40, 25))
    assert r.masks.shape == (1, 30, 50) and r.logits.shape[-1] == model.tracker_config.low_res_size


def test_refine_refuses_a_prediction_made_on_another_image():
    model = build_video_model("test", seed=0)
    pred = ImagePredictor(model)
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 255, (30, 50, 3), dtype=np.uint8) for _ in range(2))
    found = pred.set_image(first).predict(text="thing", threshold=0.0)
    assert len(pred.refine(instance=(found, 0))) == 1  # its own image
    pred.set_image(second)  # same size, other pixels
    with pytest.raises(InputError, match="another image"):
        pred.refine(instance=(found, 0))
    pred.set_image(first.copy())  # the same pixels again: the same image
    assert len(pred.refine(instance=(found, 0))) == 1


def test_refinement_repr_is_short():
    model = build_video_model("test", seed=0)
    r = ImagePredictor(model).set_image(np.zeros((30, 50, 3), np.uint8)).refine(points=[(5, 5)])
    assert repr(r).startswith("Refinement(1 mask(s)") and "tensor" not in repr(r)
    assert r.to_json()["masks"][0]["segmentation"]["size"] == [30, 50]
