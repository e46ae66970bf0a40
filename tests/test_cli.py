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
    run_err(capsys, base + ["--exemplar", "10,10,500,20"], "outside the 80x60 image")
    run_err(capsys, base + ["--exemplar=-5,10,20,20"], "outside")
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
