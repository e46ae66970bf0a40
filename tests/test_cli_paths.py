"""Every CLI command against a table of wrong paths (missing, directory, unwritable, existing
run): exit status 2, exactly one line on stderr, and nothing half-written next to the outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conceptseg.cli import main
from conceptseg.cli.demo import examples_dir


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A working folder with one good input of each kind and an existing training run."""
    root = tmp_path_factory.mktemp("paths")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
                    ).save(root / "img.png")
    frames = root / "frames"
    frames.mkdir()
    for t in range(2):
        Image.open(root / "img.png").save(frames / f"{t:05d}.png")
    (root / "adir").mkdir()
    run = root / "oldrun"  # an existing training run
    run.mkdir()
    for name in ("model.safetensors", "train_state.pt", "metrics.jsonl", "train_config.json"):
        (run / name).write_bytes(b"precious")
    (root / "gt.json").write_text(json.dumps({"images": [], "annotations": [],
                                              "categories": [{"id": 1, "name": "x"}]}))
    return root


def _cases(r: Path):
    img, frames, adir = r / "img.png", r / "frames", r / "adir"
    ro = img  # a file as the parent folder: unwritable even for root (CI runs as root)
    seg = ["segment", str(img), "--text", "red object"]
    trk = ["track", str(frames), "--text", "red object"]
    return {
        "segment image missing": ["segment", str(r / "nothere.png"), "--text", "x"],
        "segment image is a directory": ["segment", str(adir), "--text", "x"],
        "segment --out directory": seg + ["--out", str(adir)],
        "segment --json directory": seg + ["--json", str(adir)],
        "segment --out unwritable": seg + ["--out", str(ro / "o.png")],
        "segment --out in /proc": seg + ["--out", "/proc/o.png"],
        "segment --checkpoint missing": seg + ["--checkpoint", str(r / "nothere.pt")],
        "segment --checkpoint directory": seg + ["--checkpoint", str(adir)],
        "track video missing": ["track", str(r / "nothere.mp4"), "--text", "x"],
        "track --json directory": trk + ["--json", str(adir)],
        "track --out directory": trk + ["--out", str(adir)],
        "track --json unwritable": trk + ["--json", str(ro / "m.json")],
        "convert src missing": ["convert", str(r / "nothere.pt"), str(r / "x.pt"), "--to", "ours"],
        "convert dst directory": ["convert", str(examples_dir().parent / "tiny.safetensors"),
                                  str(adir), "--to", "official"],
        "convert dst unwritable": ["convert", str(examples_dir().parent / "tiny.safetensors"),
                                   str(ro / "x.pt"), "--to", "official"],
        "train --out in /proc": ["train", "--config", "test", "--steps", "1", "--out", "/proc/x"],
        "train --out unwritable": ["train", "--config", "test", "--steps", "1",
                                   "--out", str(ro / "run")],
        "train --out existing run": ["train", "--config", "test", "--steps", "1",
                                     "--out", str(r / "oldrun")],
        "train --init missing": ["train", "--init", str(r / "nothere.pt"), "--steps", "1",
                                 "--out", str(r / "newrun")],
        "eval --gt missing": ["eval", "--gt", str(r / "nothere.json"), "--pred", str(r / "gt.json"),
                              "--out", str(r / "ev")],
        "eval --pred directory": ["eval", "--gt", str(r / "gt.json"), "--pred", str(adir),
                                  "--out", str(r / "ev")],
        "eval --data missing": ["eval", "--model", "", "--data", str(r / "nothere.json"),
                                "--out", str(r / "ev")],
        "eval --out is a file": ["eval", "--gt", str(r / "gt.json"), "--pred", str(r / "gt.json"),
                                 "--out", str(img)],
        "eval --out unwritable": ["eval", "--gt", str(r / "gt.json"), "--pred", str(r / "gt.json"),
                                  "--out", str(ro / "ev")],
        "demo --out in /proc": ["demo", "--out", "/proc/demo"],
        "demo --out is a file": ["demo", "--out", str(img)],
        "demo --checkpoint missing": ["demo", "--checkpoint", str(r / "nothere.pt"),
                                      "--out", str(r / "demo")],
    }


CASES = sorted(_cases(Path("/x")))


def _listing(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.stat().st_size
    return out


@pytest.mark.parametrize("case", CASES)
def test_wrong_paths_give_one_line_and_exit_2(case, place, capsys):
    argv = _cases(place)[case]
    before = _listing(place)
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (case, err)
    assert len(err) == 1 and "error" in err[0], (case, err)
    assert _listing(place) == before, f"{case}: files were written or changed"
