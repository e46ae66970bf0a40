"""Run directories and resumed runs (issue 17, items 7 and 9): an existing run is never
overwritten silently, a resumed run honours each changed option or refuses it in one line, and
options that would silently do something else are refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conceptseg.cli import main
from conceptseg.errors import InputError
from conceptseg.train.config import TrainConfig
from conceptseg.train.detect import train
from conceptseg.train.tracker import train_tracker
from conceptseg.train.tracker_step import TrackerTrainConfig
from tests.test_train import _Kill, _kill_after

quiet = lambda *a: None  # noqa: E731


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), steps=4, batch_images=1, phrases_per_image=2, checkpoint_every=2,
                log_every=1, progress=False, lr=1e-3, warmup=1, threads=1)
    return TrainConfig(**{**base, **kw})


def _metrics(run: Path) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_existing_run_is_not_overwritten_without_resume(tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(run, steps=2), model_config="test", log=quiet)
    weights = (run / "model.safetensors").read_bytes()
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(InputError, match="--resume"):
        train(_cfg(run, steps=2, seed=1), model_config="test", log=quiet)
    args = ["train", "--config", "test", "--steps", "2", "--batch-images", "1", "--threads", "1",
            "--no-progress", "--out", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    assert (run / "model.safetensors").read_bytes() == weights
    assert (run / "metrics.jsonl").read_text() == before
    # --overwrite starts clean files: one run's metrics, in order
    assert main(args + ["--overwrite", "--log-every", "1"]) == 0
    assert [m["step"] for m in _metrics(run)] == [1, 2]


def test_existing_tracker_run_is_not_overwritten_without_resume(tmp_path):
    cfg = TrackerTrainConfig(out=str(tmp_path / "t"), steps=1, clips=1, frames=2, max_objects=1,
                             progress=False, threads=1)
    train_tracker(cfg, model_config="test", log=quiet)
    with pytest.raises(InputError, match="--resume"):
        train_tracker(cfg, model_config="test", log=quiet)


def test_resume_honours_changed_lr_and_steps(tmp_path):
    """--resume --lr X: the schedule from the checkpoint on is the one of a run with lr X (the
    old code kept the old base lr while train_config.json recorded the new one)."""
    train(_cfg(tmp_path / "ref", lr=2e-3, steps=6), model_config="test", log=quiet)
    train(_cfg(tmp_path / "r", stop_at=2), model_config="test", log=quiet)
    said = []
    train(_cfg(tmp_path / "r", lr=2e-3, steps=6), model_config="test", resume=True,
          log=said.append)
    ref, got = _metrics(tmp_path / "ref"), _metrics(tmp_path / "r")
    assert [m["step"] for m in got] == [1, 2, 3, 4, 5, 6]
    assert [m["lr"] for m in got[2:]] == [m["lr"] for m in ref[2:]]
    assert json.loads((tmp_path / "r" / "train_config.json").read_text())["lr"] == 2e-3
    assert any("--lr 0.002" in s for s in said) and any("--steps 6" in s for s in said)


def test_resume_with_another_freeze_or_stage_is_refused_in_one_line(tmp_path):
    run = tmp_path / "r"
    train(_cfg(run, stop_at=2), model_config="test", log=quiet)
    for kw, flag in (({"freeze": ("vision",)}, "--freeze"), ({"stage": "pretrain"}, "--stage"),
                     ({"attr_aux": 1.0}, "--attr-aux")):
        with pytest.raises(InputError, match=flag) as e:
            train(_cfg(run, **kw), model_config="test", resume=True, log=quiet)
        assert "\n" not in str(e.value)


def test_resumed_metrics_stay_one_run_in_order(tmp_path):
    """Killed after step 3 (checkpoint at 2) and resumed: step 3 is logged once, not twice."""
    run = tmp_path / "r"
    with pytest.raises(_Kill):
        train(_cfg(run), model_config="test", hooks=_kill_after(3), log=quiet)
    train(_cfg(run), model_config="test", resume=True, log=quiet)
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3, 4]


@pytest.mark.parametrize("extra, says", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-2"], "--epochs"),
    (["--epochs", "3"], "synthetic"), (["--steps", "0"], "--steps"),
    (["--stage", "tracker", "--epochs", "2"], "--epochs"),
    (["--stage", "tracker", "--batch-images", "2"], "--batch-images"),
    (["--resume", "--overwrite"], "--overwrite"),
])
def test_train_options_that_would_be_ignored_are_refused(tmp_path, capsys, extra, says):
    out = tmp_path / "r"
    assert main(["train", "--config", "test", "--no-progress", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("stage", ["detect", "tracker"])
def test_train_output_paths_are_checked_before_work(tmp_path, capsys, stage):
    (tmp_path / "file").write_text("x")
    for out in ("/proc/x", str(tmp_path / "file"), str(tmp_path / "file" / "sub")):
        assert main(["train", "--stage", stage, "--config", "test", "--no-progress",
                     "--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("stage", ["detect", "tracker"])
def test_train_device_cuda_without_cuda_is_one_line(tmp_path, capsys, stage):
    out = tmp_path / "r"
    assert main(["train", "--stage", stage, "--config", "test", "--no-progress", "--device", "cuda",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0].lower(), err
    assert not out.exists()
