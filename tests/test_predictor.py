"""ImagePredictor: input formats, batching, caching, thresholds, exports."""

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.errors import InputError
from conceptseg.inference.image import ImagePredictor
from conceptseg.inference.image_io import load_image


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pred(test_model, rgb):
    return ImagePredictor(test_model).set_image(rgb)


def test_image_formats_agree(tmp_path, rgb):
    rgba = np.concatenate([rgb, np.full((50, 70, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgb)  # alpha dropped, not composited
    assert np.array_equal(load_image(Image.fromarray(rgb)), rgb)
    gray = rgb[..., 0]
    assert np.array_equal(load_image(gray), np.repeat(gray[..., None], 3, axis=2))
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (50, 70, 3)
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)


def test_exif_orientation_is_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (70, 50, 3)


def test_batched_prompts_equal_single(pred):
    texts = ["red square", "blue circle", "a striped hexagon"]
    batched = pred.predict(text=texts, threshold=0.0)
    for t, b in zip(texts, batched):
        s = pred.predict(text=t, threshold=0.0)
        assert s.text == b.text == t
        torch.testing.assert_close(s.scores, b.scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(s.boxes, b.boxes, atol=1e-3, rtol=0)
        assert (s.masks != b.masks).float().mean() < 1e-3


def test_text_cache_and_image_reuse(pred, monkeypatch):
    calls = []
    orig_text = pred.model.encode_text
    orig_image = pred.model.encode_image
    monkeypatch.setattr(pred.model, "encode_text", lambda t: calls.append(t.shape[0]) or orig_text(t))
    monkeypatch.setattr(pred.model, "encode_image", lambda *a: (_ for _ in ()).throw(AssertionError))
    pred.predict(text=["cached one", "cached two"])
    pred.predict(text=["cached one", "cached three"])
    assert calls == [2, 1]  # only the new phrase is encoded; the image is never re-encoded
    monkeypatch.setattr(pred.model, "encode_image", orig_image)


def test_text_cache_smaller_than_one_call(test_model, rgb):
    # more distinct phrases in one call than the LRU cache holds, some of them cached already:
    # refreshing the cache must not evict what this call still needs
    small = ImagePredictor(test_model, text_cache_size=2).set_image(rgb)
    small.predict(text=["a", "b"])
    out = small.predict(text=["c", "a", "d", "b", "a"], threshold=0.0)
    assert [p.text for p in out] == ["c", "a", "d", "b", "a"]
    assert len(small._text_cache) == 2
    torch.testing.assert_close(out[1].scores, out[4].scores)


def test_threshold_and_outputs(pred, rgb):
    everything = pred.predict(text="thing", threshold=0.0)
    assert len(everything) == pred.model.config.num_queries
    assert torch.all(everything.scores[:-1] >= everything.scores[1:])
    assert everything.masks.shape == (len(everything), 50, 70) and everything.masks.dtype == torch.bool
    assert torch.all(everything.scores <= everything.presence + 1e-6)
    cut = float(everything.scores[2])
    some = pred.predict(text="thing", threshold=cut)
    assert len(some) == 2
    none = pred.predict(text="thing", threshold=1.0)
    assert len(none) == 0 and none.masks.shape == (0, 50, 70)
    coco = everything.to_coco(image_id=7)
    assert coco[0]["image_id"] == 7 and set(coco[0]) >= {"segmentation", "bbox", "score"}
    from conceptseg.ops.masks import rle_decode
    assert torch.equal(rle_decode([coco[0]["segmentation"]])[0], everything.masks[0])
    assert everything.overlay(rgb).size == (70, 50)


def test_exemplars(pred):
    r = pred.predict(text="thing", exemplars=[((5, 5, 30, 30), True), ((40, 10, 60, 40), False)],
                     threshold=0.0)
    plain = pred.predict(text="thing", threshold=0.0)
    assert not torch.allclose(r.scores, plain.scores)
    only_boxes = pred.predict(exemplars=[((5, 5, 30, 30), True)], threshold=0.0)
    assert only_boxes.text is None and len(only_boxes) > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(text=""), "empty"),
    (dict(text="x" * 600), "characters"),
    (dict(text=b"\xff\xfe"), "UTF-8"),
    (dict(text=None), "give a text"),
    (dict(text="a", exemplars=[((500, 0, 580, 10), True)]), "entirely outside"),  # partly: clipped
    (dict(text="a", exemplars=[((10, 0, 5, 10), True)]), "x0 < x1"),
    (dict(text="a", exemplars=[((0, 0, float("nan"), 10), True)]), "non-finite"),
    (dict(text="a", threshold=1.5), "threshold"),
])
def test_bad_input(pred, kwargs, match):
    with pytest.raises(InputError, match=match):
        pred.predict(**kwargs)


def test_predict_before_set_image(test_model):
    with pytest.raises(InputError, match="set_image"):
        ImagePredictor(test_model).predict(text="a")


def test_bf16_mode_runs_close(test_model, rgb):
    a = ImagePredictor(test_model).set_image(rgb).predict(text="thing", threshold=0.0)
    b = ImagePredictor(test_model, precision="bf16").set_image(rgb).predict(text="thing", threshold=0.0)
    assert (a.scores.sort().values - b.scores.sort().values).abs().max() < 0.05


# -- issue 17: prompts read strictly, results tied to their image, short reprs, clipped boxes --
def test_exemplar_labels_are_strict(pred):
    box = (5, 5, 30, 30)
    neg = pred.predict(text="thing", exemplars=[(box, False)], threshold=0.0)
    for word in ("neg", "NEGATIVE", "-", 0, 0.0, np.bool_(False)):
        r = pred.predict(text="thing", exemplars=[(box, word)], threshold=0.0)
        assert torch.equal(r.scores, neg.scores), word
    pos = pred.predict(text="thing", exemplars=[(box, True)], threshold=0.0)
    for word in ("pos", "positive", "+", 1, torch.tensor(1)):
        assert torch.equal(pred.predict(text="thing", exemplars=[(box, word)], threshold=0.0).scores,
                           pos.scores), word
    for bad in ("maybe", "yes", 2, None, 0.5):
        with pytest.raises(InputError, match="exemplar 0 label must be"):
            pred.predict(text="thing", exemplars=[(box, bad)])


def test_validate_exemplars_signature_for_video_sessions():
    from conceptseg.inference.prompts import validate_exemplars

    boxes, labels = validate_exemplars([((0, 0, 10, 20), "neg"), ((10, 0, 20, 20), 1)], 20, 40)
    assert boxes.shape == (2, 4) and labels.tolist() == [0, 1]
    torch.testing.assert_close(boxes[0], torch.tensor([0.25, 0.25, 0.5, 0.5]))


def test_precision_fp16_is_an_input_error(test_model):
    from conceptseg.errors import ConceptSegError

    with pytest.raises(ConceptSegError, match="precision"):
        ImagePredictor(test_model, precision="fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
def test_device_cuda_without_cuda_is_an_input_error(test_model):
    with pytest.raises(InputError, match="no CUDA device"):
        ImagePredictor(test_model, device="cuda")


def test_overlay_on_another_size_is_an_input_error(pred):
    r = pred.predict(text="thing", threshold=0.0)
    with pytest.raises(InputError, match="made on a 70x50 image"):
        r.overlay(np.zeros((60, 70, 3), np.uint8))


def test_boxes_are_clipped_to_the_image(pred):
    r = pred.predict(text="thing", threshold=0.0)
    assert bool((r.boxes >= 0).all()) and bool((r.boxes[:, 0::2] <= 70).all())
    assert bool((r.boxes[:, 1::2] <= 50).all())


def test_result_reprs_are_short(pred):
    r = pred.predict(text="thing", threshold=0.0)
    text = repr(r)
    assert "tensor" not in text and " at 0x" not in text and len(text) < 200
    assert text.startswith("Prediction(text='thing', 8 instance(s)")


def test_json_mask_formats_share_the_ops_serialisers(pred):
    from conceptseg.ops.encode import boxes_to_xywh, masks_to_polygons
    from conceptseg.ops.masks import rle_encode

    r = pred.predict(text="thing", threshold=0.0)
    rle = r.to_json(image_id=3)["instances"]
    assert [i["segmentation"] for i in rle] == rle_encode(r.masks)
    assert [i["bbox"] for i in rle] == boxes_to_xywh(r.boxes)
    poly = r.to_json(masks="polygons")["instances"]
    assert [i["segmentation"] for i in poly] == masks_to_polygons(r.masks)
    assert "segmentation" not in r.to_json(masks="none")["instances"][0]
    with pytest.raises(InputError, match="mask format"):
        r.to_json(masks="png")


def test_overlay_colours_continue_across_prompts(pred, rgb):
    from conceptseg.inference.overlay import draw_overlay, palette

    a, b = pred.predict(text=["thing", "other"], threshold=0.0)
    a.masks[:], b.masks[:] = False, False
    a.masks[0, :10, :10], b.masks[0, 30:, 50:] = True, True
    im = np.asarray(draw_overlay(np.zeros_like(rgb), [a, b], draw_boxes=False, label=False))
    colours = palette(len(a) + len(b))
    assert tuple(im[5, 5]) == tuple(int(c * 0.5) for c in colours[0])
    assert tuple(im[40, 60]) == tuple(int(c * 0.5) for c in colours[len(a)])  # not colours[0]


def test_label_font_scales_with_the_image():
    from conceptseg.inference.overlay import label_font

    small, large = label_font(448, 448), label_font(3000, 2000)
    if not hasattr(small, "size"):
        pytest.skip("Pillow < 10.1 has one bitmap font size")
    assert large.size > 3 * small.size


def test_results_are_ordinary_tensors(pred):
    r = pred.predict(text="thing", threshold=0.0)
    assert not r.masks.is_inference() and not r.scores.is_inference()
    r.masks[0] = False  # a caller may edit its results


def test_overlay_labels_stay_inside_the_image(monkeypatch):
    from PIL import ImageDraw

    from conceptseg.inference.results import Prediction

    drawn = []
    orig = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, **k: drawn.append((self, xy, text, k)) or
                        orig(self, xy, text, **k))
    boxes = torch.tensor([[-5.6, 0.0, 30.0, 20.0], [60.0, 30.0, 71.0, 50.0]])  # sticking out
    r = Prediction("person", torch.zeros(2, 50, 70, dtype=torch.bool), boxes,
                   torch.tensor([0.52, 0.4]), 0.9, (50, 70))
    r.overlay(np.zeros((50, 70, 3), np.uint8))
    for draw, (x, y), text, k in drawn:
        left, top, right, bottom = draw.textbbox((x, y), text, font=k.get("font"))
        assert left >= 0 and top >= 0 and right <= 70 and bottom <= 50, (text, left, right)
