"""CLI: results written atomically, and every kind of bad input gets one line on stderr and
exit status 2 (no traceback)."""

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.checkpoint import save_checkpoint
from conceptseg.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, test_model):
    return str(save_checkpoint(test_model, tmp_path_factory.mktemp("ck") / "test.safetensors"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(p)
    return str(p)


def _png_header_only(path, w, h):
    """A PNG that claims w x h pixels (decoding it would need w*h*3 bytes)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                     chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def run_err(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and match in err[0], err
    return err[0]


def test_segment_writes_outputs(tmp_path, ckpt, image, capsys):
    out, js = tmp_path / "o.png", tmp_path / "o.json"
    rc = main(["segment", image, "--text", "red square", "--text", "circle", "--checkpoint", ckpt,
               "--threshold", "0", "--out", str(out), "--json", str(js)])
    assert rc == 0
    doc = json.loads(js.read_text())
    assert [r["text"] for r in doc["results"]] == ["red square", "circle"]
    assert len(doc["results"][0]["instances"]) == 8  # threshold 0 keeps every query
    assert Image.open(out).size == (80, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "o.png"]  # no temp files


def test_bad_images(tmp_path, ckpt, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    run_err(capsys, ["segment", str(corrupt), "--text", "x", "--checkpoint", ckpt], "cannot decode")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    run_err(capsys, ["segment", str(trunc), "--text", "x", "--checkpoint", ckpt], "cannot decode")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    run_err(capsys, ["segment", str(tiny), "--text", "x", "--checkpoint", ckpt], "1x1 pixels")
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 30000, 30000)
    run_err(capsys, ["segment", str(huge), "--text", "x", "--checkpoint", ckpt], "above the limit")
    run_err(capsys, ["segment", str(tmp_path / "nope.png"), "--text", "x", "--checkpoint", ckpt],
            "not found")


def test_bad_prompts(ckpt, image, capsys):
    run_err(capsys, ["segment", image, "--text", "", "--checkpoint", ckpt], "prompt is empty")
    run_err(capsys, ["segment", image, "--text", "   ", "--checkpoint", ckpt], "prompt is empty")
    run_err(capsys, ["segment", image, "--text", "a" * 10_000, "--checkpoint", ckpt], "10,000 characters")
    bad = b"\xff\xfe bus".decode("utf-8", "surrogateescape")  # how Python passes non-UTF-8 argv
    run_err(capsys, ["segment", image, "--text", bad, "--checkpoint", ckpt], "not valid UTF-8")
    run_err(capsys, ["segment", image, "--checkpoint", ckpt], "give --text")


def test_bad_boxes(ckpt, image, capsys):
    base = ["segment", image, "--text", "x", "--checkpoint", ckpt]
    # partly outside is clipped (tests/test_concept.py); entirely outside is refused
    run_err(capsys, base + ["--exemplar", "100,10,500,20"], "entirely outside the 80x60 image")
    run_err(capsys, base + ["--exemplar=-50,10,-5,20"], "entirely outside")
    run_err(capsys, base + ["--exemplar", "-50,10,-5,20"], "entirely outside")
    run_err(capsys, base + ["--exemplar", "30,10,20,20"], "x0 < x1")
    run_err(capsys, base + ["--exemplar", "1,2,3"], "four numbers")
    run_err(capsys, base + ["--exemplar", "1,2,3,4:maybe"], "'pos' or 'neg'")


def test_bad_checkpoints(tmp_path, ckpt, image, capsys):
    data = open(ckpt, "rb").read()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 3])
    run_err(capsys, ["segment", image, "--text", "x", "--checkpoint", str(trunc)], "truncated or corrupt")
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    run_err(capsys, ["segment", image, "--text", "x", "--checkpoint", str(other)], "not a SAM 3")
    text = tmp_path / "README.pt"
    text.write_text("not a checkpoint\n" * 20)
    run_err(capsys, ["segment", image, "--text", "x", "--checkpoint", str(text)], "checkpoint")


def test_subprocess_error_has_no_traceback(tmp_path, ckpt):
    r = subprocess.run([sys.executable, "-m", "conceptseg.cli", "segment", str(tmp_path / "x.png"),
                        "--text", "bus", "--checkpoint", ckpt], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


# -- issue 17: one line and exit 2 before any work; outputs as named; polish --
@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a command loads a model (outputs must be checked first)."""
    from conceptseg.cli import segment

    monkeypatch.setattr(segment, "load_model", lambda args: pytest.fail("model loaded"))


def test_segment_output_paths_are_checked_before_work(tmp_path, ckpt, image, capsys, no_model):
    base = ["segment", image, "--text", "x", "--checkpoint", ckpt]
    run_err(capsys, base + ["--json", str(tmp_path)], "is a directory")
    run_err(capsys, base + ["--out", str(tmp_path)], "is a directory")
    run_err(capsys, base + ["--out", "/proc/overlay.png"], "not writable")
    run_err(capsys, base + ["--out", str(tmp_path / "o.xyz")], "unknown image suffix '.xyz'")
    run_err(capsys, base + ["--threshold", "1.5"], "threshold")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
def test_segment_device_cuda_without_cuda_is_one_line(ckpt, image, capsys, no_model):
    run_err(capsys, ["segment", image, "--text", "x", "--checkpoint", ckpt, "--device", "cuda"],
            "no CUDA device")


def test_segment_out_suffix_names_the_format(tmp_path, ckpt, image):
    for name, fmt in (("o.gif", "GIF"), ("o.jpg", "JPEG"), ("o.webp", "WEBP")):
        assert main(["segment", image, "--text", "x", "--checkpoint", ckpt, "--threshold", "0",
                     "--out", str(tmp_path / name)]) == 0
        assert Image.open(tmp_path / name).format == fmt


def test_segment_json_polygons(tmp_path, ckpt, image):
    js = tmp_path / "p.json"
    assert main(["segment", image, "--text", "x", "--checkpoint", ckpt, "--threshold", "0",
                 "--json", str(js), "--masks", "polygons"]) == 0
    inst = json.loads(js.read_text())["results"][0]["instances"]
    assert all(isinstance(i["segmentation"], list) for i in inst)
    assert all(0 <= i["bbox"][0] and i["bbox"][0] + i["bbox"][2] <= 80 for i in inst)


def test_directory_as_image_says_it_is_a_directory(tmp_path, ckpt, capsys):
    run_err(capsys, ["segment", str(tmp_path), "--text", "x", "--checkpoint", ckpt],
            "is a directory")


def test_mistyped_flag_prints_the_subcommand_usage(image, capsys):
    with pytest.raises(SystemExit) as e:
        main(["segment", image, "--txt", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: conceptseg segment" in err and "unrecognized arguments: --txt x" in err


def test_version_and_python_m_conceptseg():
    r = subprocess.run([sys.executable, "-m", "conceptseg", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("conceptseg ")
    r = subprocess.run([sys.executable, "-m", "conceptseg", "segment", "nothere.png", "--text",
                        "x"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "conceptseg segment: error: image not found: nothere.png"


def test_warnings_print_as_one_line_once(monkeypatch, capsys):
    import warnings

    from conceptseg.cli import segment

    def noisy(args):
        for _ in range(2):
            warnings.warn("careful: something odd\nsecond line", UserWarning)
        warnings.warn("careful: something odd\nsecond line", UserWarning)  # another location
        return 0

    monkeypatch.setattr(segment, "cmd_segment", noisy)
    assert main(["segment", "x.png", "--text", "x"]) == 0
    err = capsys.readouterr().err
    assert err == "conceptseg segment: warning: careful: something odd\n"


def test_wide_image_says_it_is_squashed(tmp_path, ckpt, capsys):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((16, 128, 3), np.uint8)).save(wide)
    assert main(["segment", str(wide), "--text", "x", "--checkpoint", ckpt]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "128x16 image (8.0:1) is squashed" in err[0]
