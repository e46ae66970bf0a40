"""Video reading / preprocessing / writing (conceptseg.video.io)."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.errors import InputError
from conceptseg.errors import VideoInputError
from conceptseg.video.io import open_video
from conceptseg.video.preprocess import (
    preprocess_frame_cv2, preprocess_frame_folder, preprocess_frame_torchcodec, resize_cubic_uint8,
    to_model_input)
from conceptseg.video.writer import draw_overlay, write_overlay_video

from .conftest import reference

av = pytest.importorskip("av", reason="PyAV (the [video] extra) is needed for video files")


def _frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth synthetic content that survives lossy coding well."""
    y, x = np.mgrid[0:h, 0:w]
    f = np.empty((h, w, 3), np.uint8)
    f[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    f[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    f[..., 2] = (i * 9) % 256
    return f


def _write_with_pyav(path: Path, n: int, h: int = 48, w: int = 64, codec: str = "libx264",
                     rate: int = 25) -> None:
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    for i in range(n):
        for packet in stream.encode(av.VideoFrame.from_ndarray(_frame(i, h, w), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    _write_with_pyav(path, 30)
    return path


# ---------------------------------------------------------------- official preprocessing


def test_folder_preprocessing_matches_official_fixture_bit_exactly():
    case = torch.load(reference("video_case.pt"), weights_only=True)
    src = open_video(reference("video_frames"))
    assert src.kind == "frames" and len(src) == 4 and src.size == (96, 128)
    got = src.preprocess_all(112)
    ref = case["video_input_fp16"]
    assert got.dtype == torch.float16 and got.shape == ref.shape
    assert torch.equal(got, ref)
    assert to_model_input(got).dtype == torch.float32


def test_cv2_resize_emulation_matches_recorded_opencv_output():
    # expected values recorded with opencv-python-headless 4.14: cv2.resize(img, (W, H), INTER_CUBIC)
    img = np.array(IMG, dtype=np.uint8)
    assert np.array_equal(resize_cubic_uint8(img, (4, 9)), np.array(UP49, dtype=np.uint8))
    assert np.array_equal(resize_cubic_uint8(img, (11, 13))[..., 0],
                          np.array(UP1113_CH0, dtype=np.uint8))
    assert np.array_equal(resize_cubic_uint8(img, (5, 7)), img)  # same size: a copy


def test_cv2_resize_emulation_against_opencv_if_installed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    ours = resize_cubic_uint8(img, (112, 112)).astype(int)
    theirs = cv2.resize(img, (112, 112), interpolation=cv2.INTER_CUBIC).astype(int)
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_file_preprocessing_paths():
    f = _frame(3)
    x = preprocess_frame_cv2(f, 32)  # official OpenCV loader: no /255, float32
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert x.min() >= -1 and x.max() <= 509 and x.max() > 100
    ref = (torch.from_numpy(resize_cubic_uint8(f, (32, 32))).permute(2, 0, 1).float() - 0.5) / 0.5
    assert torch.equal(x, ref)
    y = preprocess_frame_torchcodec(f, 32)
    assert y.dtype == torch.float16 and y.shape == (3, 32, 32)
    assert y.min() >= -1.01 and y.max() <= 1.01
    z = preprocess_frame_folder(f, 32)
    assert z.dtype == torch.float16 and (z.float() - y.float()).abs().max() < 0.2


# ---------------------------------------------------------------- video files


def test_mp4_written_with_pyav_reads_lazily(mp4):
    src = open_video(mp4)
    assert src.kind == "file" and len(src) == 30
    assert src.size == (48, 64) and (src.height, src.width) == (48, 64)
    assert src.fps == pytest.approx(25.0)
    for i in (0, 7, 29, -1):
        frame = src[i]
        assert frame.dtype == np.uint8 and frame.shape == (48, 64, 3)
        want = _frame(i % 30).astype(int)
        assert np.abs(frame.astype(int) - want).mean() < 4  # lossy H.264
    assert src.preprocess(0, 32).dtype == torch.float32  # default: the official cv2 path
    tc = open_video(mp4, file_preprocessing="torchcodec")
    assert tc.preprocess(0, 32).dtype == torch.float16
    src.close()


def test_random_access_equals_sequential_decode(mp4):
    seq = [f.copy() for f in open_video(mp4)]
    src = open_video(mp4, cache_size=1)
    for i in (29, 3, 17, 16, 0, 28, 5, 5):
        assert np.array_equal(src[i], seq[i]), i


def test_decoding_frame_500_of_600_keeps_the_cache_bounded(tmp_path):
    path = tmp_path / "long.mp4"
    _write_with_pyav(path, 600, h=32, w=32)
    src = open_video(path, cache_size=4)
    assert len(src) == 600
    frame = src[500]
    assert frame.shape == (32, 32, 3)
    assert len(src.cached_indices) <= 4 and 500 in src.cached_indices
    src[250]  # backward: re-positions, the cache stays bounded
    src[599]
    assert len(src.cached_indices) <= 4
    # the decoded frame is the one written at index 500 (its blue level encodes the index)
    assert abs(int(frame[..., 2].mean()) - (500 * 9) % 256) <= 3


def test_other_containers(tmp_path):
    for name, codec in (("c.webm", "libvpx-vp9"), ("c.mov", "mpeg4")):
        if codec not in av.codecs_available:
            continue
        path = tmp_path / name
        _write_with_pyav(path, 12, codec=codec)
        src = open_video(path, cache_size=2)
        assert len(src) == 12
        seq = [f.copy() for f in open_video(path)]
        assert all(np.array_equal(src[i], seq[i]) for i in (11, 2, 9, 0))


def _patch_tkhd_rotation(src: Path, dst: Path, matrix) -> None:
    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 8 + (20 if version == 0 else 32) + 16
    vals = [v * (1 << 30) if k in (2, 5, 8) else v * (1 << 16) for k, v in enumerate(matrix)]
    data[off:off + 36] = struct.pack(">9i", *vals)
    dst.write_bytes(data)


def test_display_rotation_is_applied(tmp_path):
    path = tmp_path / "plain.mp4"
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    f = np.zeros((48, 64, 3), np.uint8)
    f[:10, :20] = 255  # a white block in the top-left corner
    for _ in range(3):
        for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)
    container.close()
    rotated = tmp_path / "rot.mp4"
    _patch_tkhd_rotation(path, rotated, [0, 1, 0, -1, 0, 0, 0, 0, 1])  # "rotate=90"
    src = open_video(rotated)
    frame = src[0]
    # displayed rotated 90 degrees clockwise (as OpenCV shows it): block at the top right
    assert src.size == (64, 48) and frame.shape == (64, 48, 3)
    assert frame[:20, 38:].mean() > 200 and frame[:20, :10].mean() < 50
    assert open_video(rotated, auto_rotate=False)[0].shape == (48, 64, 3)


# ---------------------------------------------------------------- frame folders


def test_frame_folder_natural_order_and_single_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.fromarray(_frame(i, 16, 24)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("ignored")
    src = open_video(folder)
    assert [p.name for p in src.files] == ["1.png", "2.png", "10.png"]
    assert np.array_equal(src[2], _frame(10, 16, 24))
    assert src.size == (16, 24) and src.fps == 30.0
    named = tmp_path / "named"
    named.mkdir()
    for i in (10, 2, 1):
        Image.fromarray(_frame(i, 16, 24)).save(named / f"frame_{i}.jpg")
    assert [p.name for p in open_video(named).files] == ["frame_1.jpg", "frame_2.jpg",
                                                         "frame_10.jpg"]
    one = open_video(folder / "2.png")
    assert one.kind == "image" and one.is_image and len(one) == 1


def test_frame_folder_cache_is_bounded(tmp_path):
    for i in range(12):
        Image.fromarray(_frame(i, 8, 8)).save(tmp_path / f"{i:05d}.png")
    src = open_video(tmp_path, cache_size=3)
    for i in range(12):
        src[i]
    assert src.cached_indices == (9, 10, 11)


# ---------------------------------------------------------------- errors


def test_errors_are_input_errors(tmp_path, mp4):
    with pytest.raises(InputError, match="not found"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(VideoInputError, match="unsupported"):
        open_video(tmp_path / "a.txt")
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(VideoInputError):
        open_video(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoInputError, match="no frames"):
        open_video(empty)
    src = open_video(mp4)
    with pytest.raises(VideoInputError, match="out of range"):
        src[30]
    with pytest.raises(VideoInputError, match="out of range"):
        src[-31]
    with pytest.raises(TypeError):
        src[1.5]


def test_zero_frame_video(tmp_path):
    path = tmp_path / "zero.mp4"
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.close()
    with pytest.raises(VideoInputError):
        open_video(path)


def test_truncated_video_and_broken_frames(tmp_path, mp4):
    cut = tmp_path / "cut.mp4"
    data = mp4.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoInputError):
        src = open_video(cut)
        for i in range(len(src)):
            src[i]
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(_frame(0, 8, 8)).save(folder / "0.png")
    (folder / "1.png").write_bytes(b"not a png")
    Image.fromarray(_frame(0, 9, 8)).save(folder / "2.png")
    # issue 17: every frame's header is checked when the folder is opened, before any work
    with pytest.raises(VideoInputError, match="cannot read frame"):
        open_video(folder)
    (folder / "1.png").unlink()
    with pytest.raises(VideoInputError, match="same size"):
        open_video(folder)


def test_frame_folder_with_a_bad_frame_fails_before_tracking(tmp_path):
    """Issue 17: one junk file or one frame of another size fails when the source is opened
    (not after tracking up to it)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(_frame(i, 8, 8)).save(folder / f"{i:03d}.png")
    assert len(open_video(folder)) == 5
    Image.fromarray(_frame(0, 8, 10)).save(folder / "004.png")
    with pytest.raises(VideoInputError, match="004.png is 10x8"):
        open_video(folder)
    Image.fromarray(_frame(0, 8, 8)).save(folder / "004.png")
    (folder / "002.png").write_bytes(b"junk")
    with pytest.raises(VideoInputError, match="002.png"):
        open_video(folder)
    with pytest.raises(VideoInputError, match="file_preprocessing"):
        open_video(folder, file_preprocessing="pil")


def test_source_frames_are_writable_copies(tmp_path):
    """Issue 17: frames from source[i] feed numpy / torch consumers (ImagePredictor.set_image)
    without a non-writable-array warning, and writing to one does not touch the cache."""
    import warnings

    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(_frame(0, 8, 8)).save(folder / "0.png")
    src = open_video(folder)
    f = src[0]
    assert f.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.from_numpy(f)
    f[:] = 0
    assert src[0].any() and not src.frame(0).flags.writeable


# ---------------------------------------------------------------- writing


def test_write_overlay_video_roundtrip_odd_size_atomic(tmp_path):
    frames = [_frame(i, 33, 47) for i in range(10)]
    out = write_overlay_video(tmp_path / "sub" / "out.mp4", iter(frames), fps=12.5)
    assert out.exists() and [p.name for p in out.parent.iterdir()] == ["out.mp4"]
    src = open_video(out)
    assert len(src) == 10 and src.size == (34, 48) and src.fps == pytest.approx(12.5)
    assert np.abs(src[4][:33, :47].astype(int) - frames[4]).mean() < 4
    stream = av.open(str(out)).streams.video[0]
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


def test_write_overlay_video_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous")

    def frames():
        yield _frame(0)
        yield _frame(1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_overlay_video(target, frames(), fps=10)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]
    with pytest.raises(VideoInputError, match="expected 64x48"):
        write_overlay_video(tmp_path / "x.mp4", [_frame(0), _frame(1, 50, 64)], fps=10)
    with pytest.raises(VideoInputError, match="no frames"):
        write_overlay_video(tmp_path / "y.mp4", [], fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_draw_overlay():
    f = np.zeros((4, 5, 3), np.uint8)
    m = np.zeros((2, 4, 5), bool)
    m[0, :2] = True
    m[1, 3:] = True
    out = draw_overlay(f, m, [3, 8], alpha=0.5)
    assert out.dtype == np.uint8 and out[2].sum() == 0
    assert out[0, 0].sum() > 0 and not np.array_equal(out[0, 0], out[3, 0])


def test_video_overlays_draw_object_ids():
    """Issue 17: video overlays name their objects."""
    f = np.zeros((64, 80, 3), np.uint8)
    m = np.zeros((2, 64, 80), bool)
    m[0, 5:30, 5:30] = True
    m[1, 40:60, 50:75] = True
    plain = draw_overlay(f, m, [3, 8])
    labelled = draw_overlay(f, m, [3, 8], draw_ids=True)
    assert labelled.shape == plain.shape and labelled.dtype == np.uint8
    diff = (labelled != plain).any(-1)
    assert diff[5:25, 5:25].any() and diff[40:60, 50:70].any() and not diff[30:40].any()


# recorded OpenCV 4.14 INTER_CUBIC outputs (see test_cv2_resize_emulation_matches_recorded_...)
IMG = [[[139, 74, 229], [241, 169, 65], [6, 160, 149], [106, 38, 175], [188, 205, 175], [229, 98, 249], [10, 148, 95]], [[86, 147, 198], [66, 39, 106], [213, 171, 45], [167, 57, 69], [81, 55, 14], [153, 178, 215], [76, 52, 39]], [[250, 72, 215], [50, 161, 223], [112, 172, 161], [233, 38, 17], [89, 1, 221], [6, 242, 127], [143, 6, 60]], [[210, 94, 25], [166, 33, 249], [189, 12, 204], [33, 57, 124], [30, 199, 149], [202, 119, 72], [220, 3, 209]], [[122, 136, 147], [77, 133, 82], [115, 87, 162], [230, 70, 71], [240, 62, 47], [184, 31, 34], [63, 65, 146]]]  # noqa: E501
UP49 = [[[126, 78, 236], [216, 131, 110], [140, 175, 80], [24, 134, 150], [112, 40, 164], [162, 165, 149], [229, 151, 222], [163, 107, 207], [3, 141, 79]], [[149, 130, 217], [50, 81, 179], [91, 129, 114], [218, 169, 55], [211, 51, 32], [103, 0, 55], [64, 141, 155], [86, 181, 147], [104, 12, 21]], [[252, 77, 69], [165, 78, 215], [141, 71, 255], [153, 55, 169], [88, 47, 88], [29, 117, 185], [68, 187, 140], [163, 124, 101], [220, 0, 168]], [[134, 133, 134], [97, 129, 103], [92, 102, 133], [143, 71, 157], [207, 69, 78], [221, 80, 60], [213, 55, 32], [151, 41, 72], [73, 60, 162]]]  # noqa: E501
UP1113_CH0 = [[133, 191, 255, 162, 0, 0, 99, 160, 208, 255, 210, 72, 0], [118, 161, 217, 154, 48, 52, 114, 146, 178, 228, 198, 79, 0], [82, 97, 121, 143, 152, 150, 138, 118, 122, 182, 182, 93, 30], [100, 76, 46, 113, 209, 223, 176, 112, 75, 113, 135, 102, 79], [191, 128, 38, 61, 155, 222, 229, 158, 73, 42, 51, 90, 117], [255, 190, 71, 43, 101, 186, 233, 174, 76, 12, 17, 100, 157], [255, 212, 125, 105, 140, 149, 133, 81, 43, 49, 99, 166, 210], [225, 201, 168, 176, 193, 122, 37, 0, 32, 122, 206, 221, 227], [178, 166, 149, 160, 175, 131, 79, 69, 105, 178, 222, 192, 169], [139, 121, 96, 97, 123, 161, 195, 208, 206, 208, 176, 118, 79], [117, 98, 70, 67, 97, 176, 251, 255, 255, 228, 158, 81, 32]]  # noqa: E501
