"""conceptseg demo: every shipped example gets overlays and JSON; the shipped clip is tracked
when the checkpoint has a tracker, and skipped with a note when it has none."""

import json

import pytest

import conceptseg.build as build
from conceptseg.cli.demo import examples_dir, run_demo


@pytest.fixture(scope="module")
def video_model():
    return build.build_video_model("test", seed=0)


def test_demo_writes_image_and_video_outputs(tmp_path, video_model, monkeypatch, capsys):
    pytest.importorskip("av")
    monkeypatch.setattr(build, "load", lambda *a, **k: video_model.detector)
    monkeypatch.setattr(build, "load_video_model", lambda *a, **k: video_model)
    written = run_demo(tmp_path)
    prompts = json.loads((examples_dir() / "prompts.json").read_text())
    names = {p.name for p in written}
    for name, texts in prompts.items():
        stem = name.rsplit(".", 1)[0]
        for t in texts:
            slug = t.replace(" ", "_")
            if name.endswith(".mp4"):
                assert {f"{stem}_{slug}.mp4", f"{stem}_{slug}.json"} <= names
                doc = json.loads((tmp_path / f"{stem}_{slug}.json").read_text())
                assert doc["text"] == t and doc["num_frames"] > 1
            else:
                assert f"{stem}_{slug}.png" in names
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res) == {n for n in prompts if not n.endswith(".mp4")}
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    assert "wrote" in capsys.readouterr().out


def test_demo_without_tracker_skips_the_clip(tmp_path, video_model, monkeypatch, capsys):
    from conceptseg.checkpoint import CheckpointError

    def no_tracker(*a, **k):
        raise CheckpointError("x.safetensors holds no tracker weights")

    monkeypatch.setattr(build, "load", lambda *a, **k: video_model.detector)
    monkeypatch.setattr(build, "load_video_model", no_tracker)
    written = run_demo(tmp_path)
    assert not any(p.suffix == ".mp4" for p in written)
    assert "video demo skipped" in capsys.readouterr().out


def test_demo_out_unwritable_is_one_line_before_work(tmp_path, monkeypatch, capsys):
    from conceptseg.cli import main

    monkeypatch.setattr(build, "load", lambda *a, **k: pytest.fail("model loaded"))
    for out, msg in (("/proc/demo", "not writable"), (str(tmp_path / "f"), "not a directory")):
        (tmp_path / "f").write_text("a file")
        assert main(["demo", "--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
