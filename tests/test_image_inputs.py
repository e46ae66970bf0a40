"""Every image mode and array dtype is read by its real range or refused in one line (issue 17
item 1): regression tests per case, and a property-based test over modes, dtypes, sizes and
aspect ratios against the RGB uint8 equivalent."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conceptseg.errors import InputError
from conceptseg.inference.image import ImagePredictor
from conceptseg.inference.image_io import load_image


@pytest.fixture(scope="module")
def pred(test_model):
    return ImagePredictor(test_model)


def _same_instances(pred, a, b):
    ra = pred.set_image(a).predict(text="purple object", threshold=0.0)
    rb = pred.set_image(b).predict(text="purple object", threshold=0.0)
    assert torch.equal(ra.scores, rb.scores) and torch.equal(ra.masks, rb.masks)


def test_gray16_png_is_scaled_by_its_range(tmp_path, pred):
    # the reported file: mode I;16, values 7196..42919 (was clipped to 255: all white)
    v = np.linspace(7196, 42919, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(v).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as im:
        assert im.mode in ("I;16", "I")
    got = load_image(tmp_path / "gray16.png")
    expect = np.rint(v / 65535 * 255).astype(np.uint8)
    assert np.array_equal(got, np.repeat(expect[..., None], 3, axis=2))
    assert 25 <= got.min() and got.max() <= 170  # neither white nor black
    _same_instances(pred, tmp_path / "gray16.png", got)


def test_float_tiff_in_unit_range_is_not_black(tmp_path):
    v = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    Image.fromarray(v, mode="F").save(tmp_path / "f.tif")
    got = load_image(tmp_path / "f.tif")
    assert np.array_equal(got[..., 0], np.rint(v.astype(np.float64) * 255).astype(np.uint8))
    assert got.max() == 255


def test_uint16_array_is_scaled_not_clipped():
    v = np.arange(0, 65536, 257, dtype=np.uint16)[None, :].repeat(8, 0)  # 8 x 256
    assert np.array_equal(load_image(v)[..., 0], (v // 257).astype(np.uint8))


def test_bool_array_is_black_and_white():
    v = np.zeros((10, 12), bool)
    v[2:5, 3:9] = True
    got = load_image(v)
    assert set(np.unique(got)) == {0, 255} and got[3, 4, 0] == 255


@pytest.mark.parametrize("image,match", [
    (np.zeros((10, 10, 3), np.complex64), "dtype complex64"),
    (np.zeros((10, 10, 3), object), "dtype object"),
    (np.full((10, 10), np.nan, np.float32), "NaN"),
    (np.zeros((10, 10, 5), np.uint8), "HxWx"),
    (np.zeros((3, 10, 10), np.uint8), "channels first"),
    (np.full((10, 10, 3), 200.0, np.float32), r"must lie in \[0, 1\]"),
    (np.full((10, 10, 3), -1, np.int16), "signed integers"),
    (np.full((10, 10, 3), 300, np.int64), "signed integers"),
    (Image.new("LAB", (10, 10)), "mode LAB"),
])
def test_unreadable_images_are_refused_in_one_line(image, match):
    with pytest.raises(InputError, match=match) as e:
        load_image(image)
    assert "\n" not in str(e.value)


def test_read_only_array_gives_no_warning(pred):
    a = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    a.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred.set_image(a)


def test_directory_as_image_says_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_image(tmp_path)


def test_wide_image_warns_about_squashing(pred):
    with pytest.warns(UserWarning, match=r"squashed to a 56x56 square"):
        pred.set_image(np.zeros((10, 80, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred.set_image(np.zeros((40, 60, 3), np.uint8))  # 1.5:1 says nothing


# -- property: any mode / dtype / size either equals its RGB uint8 equivalent or is refused --
ACCEPTED = ("u8-hw", "u8-hw1", "u8-la", "u8-rgb", "u8-rgba", "u16", "u32", "u64", "i64", "f16",
            "f32", "f64", "bool", "tensor", "pil-L", "pil-RGB", "pil-RGBA", "pil-I;16", "pil-I",
            "pil-F", "pil-1", "pil-P", "pil-CMYK")
REFUSED = ("f32-0-255", "complex", "nan", "i16-negative")


def _as_kind(kind, gray, rgb, rng):
    """(input, expected H x W x 3 uint8) for one representation of the same picture."""
    g3 = np.repeat(gray[..., None], 3, axis=2)
    alpha = rng.integers(0, 256, gray.shape, dtype=np.uint8)
    table = {
        "u8-hw": (gray, g3), "u8-hw1": (gray[..., None], g3),
        "u8-la": (np.stack([gray, alpha], -1), g3), "u8-rgb": (rgb, rgb),
        "u8-rgba": (np.concatenate([rgb, alpha[..., None]], -1), rgb),
        "u16": (rgb.astype(np.uint16) * 257, rgb), "u32": (rgb.astype(np.uint32) * 16843009, rgb),
        "u64": (rgb.astype(np.uint64) * np.uint64(72340172838076673), rgb),
        "i64": (rgb.astype(np.int64), rgb), "f16": ((rgb / 255).astype(np.float16), rgb),
        "f32": ((rgb / 255).astype(np.float32), rgb), "f64": (rgb / 255, rgb),
        "bool": (gray >= 128, np.where(g3 >= 128, 255, 0).astype(np.uint8)),
        "tensor": (torch.from_numpy(rgb.copy()), rgb),
        "pil-L": (Image.fromarray(gray), g3), "pil-RGB": (Image.fromarray(rgb), rgb),
        "pil-RGBA": (Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1)), rgb),
        "pil-I;16": (Image.fromarray(gray.astype(np.uint16) * 257), g3),
        "pil-I": (Image.fromarray(gray.astype(np.int32) * 257), g3),
        "pil-F": (Image.fromarray((gray / 255).astype(np.float32)), g3),
        "pil-1": (Image.fromarray(gray >= 128).convert("1"),
                  np.where(g3 >= 128, 255, 0).astype(np.uint8)),
        "f32-0-255": (rgb.astype(np.float32) + 2.0, None), "complex": (rgb.astype(np.complex64), None),
        "nan": (np.where(rgb > 128, np.nan, 0.5), None), "i16-negative": (rgb.astype(np.int16) - 300, None),
    }
    if kind in ("pil-P", "pil-CMYK"):  # lossy modes: their own RGB rendering is the reference
        im = Image.fromarray(rgb).convert(kind[4:])
        return im, np.asarray(im.convert("RGB"))
    return table[kind]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(ACCEPTED + REFUSED), h=st.integers(8, 48), w=st.integers(8, 48),
       seed=st.integers(0, 2**16))
def test_every_input_mode_matches_its_rgb_equivalent(pred, kind, h, w, seed):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    image, expect = _as_kind(kind, gray, rgb, rng)
    if kind in REFUSED:
        with pytest.raises(InputError) as e:
            load_image(image)
        assert "\n" not in str(e.value)
        return
    got = load_image(image)
    assert got.dtype == np.uint8 and got.shape == (h, w, 3) and got.flags.writeable
    assert np.array_equal(got, expect), kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the squash note for long thin images
        _same_instances(pred, image, expect)
