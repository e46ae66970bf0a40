"""Score calibration (conceptseg/train/calibrate.py): the two shifts it folds into a model act
exactly as the re-scoring it searches with, survive a checkpoint round trip, and the chosen
point is the best of its table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptseg.build import build_model, load
from conceptseg.config import get_config
from conceptseg.train.calibrate import apply_shifts, calibrate
from conceptseg.train.detect import save_weights
from conceptseg.train.quick_eval import collect, quick_eval, summarize


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(get_config("test"), seed=0).eval()


def test_shifts_in_the_model_equal_rescoring(model, tmp_path):
    rows0 = collect(model, 3, seed=11)
    m = load(save_weights(model, tmp_path / "m.safetensors"))  # a copy
    apply_shifts(m, 1.5, -0.5)
    rows1 = collect(m, 3, seed=11)
    clamp = m.config.logit_clamp
    for a, b in zip(rows0, rows1):
        assert b.presence_logit == pytest.approx(a.presence_logit + 1.5, abs=1e-4)
        want = np.clip(a.query_logits - 0.5, -clamp, clamp)
        np.testing.assert_allclose(b.query_logits, want, atol=1e-4)
    s0 = summarize(rows0, presence_shift=1.5, score_shift=-0.5)
    s1 = summarize(rows1)
    for k in ("cgF1", "pmF1", "IL_MCC", "presence_auc"):
        assert s1[k] == pytest.approx(s0[k], abs=1e-6)
    # the calibration constant travels with our checkpoint, in every layout (issue 17 item 3)
    m2 = load(save_weights(m, tmp_path / "cal.safetensors"))
    assert m2.config.score_bias == -0.5
    rows2 = collect(m2, 3, seed=11)
    np.testing.assert_allclose(rows2[0].query_logits, rows1[0].query_logits, atol=1e-5)
    from conceptseg.checkpoint import save_checkpoint

    m3 = load(save_checkpoint(m, tmp_path / "official.pt", layout="official"))
    assert m3.config.score_bias == -0.5


def test_quick_eval_is_summarize_of_collect(model):
    a = quick_eval(model, 3, seed=5)
    b = summarize(collect(model, 3, seed=5))
    assert a["cgF1"] == b["cgF1"] and a["presence_auc"] == b["presence_auc"]


def test_calibrate_picks_the_best_point_of_its_grid(model):
    dp, dq, table = calibrate(model, 3, seed=7, presence_grid=[-2.0, 0.0, 2.0],
                              score_grid=[0.0, 6.0])
    assert len(table) == 6
    best = max(r["cgF1"] for r in table)
    chosen = next(r for r in table if (r["presence_shift"], r["score_shift"]) == (dp, dq))
    assert chosen["cgF1"] == best
    # ties go to the smallest total shift
    assert all(abs(r["presence_shift"]) + abs(r["score_shift"]) >= abs(dp) + abs(dq)
               for r in table if r["cgF1"] == best)


def test_calibrate_command_keeps_the_tracker_and_float16(tmp_path, capsys):
    """``python -m conceptseg.train.calibrate`` on the shipped file (a float16 video checkpoint)
    writes a float16 video checkpoint: the tracker is not dropped, the dtype not widened."""
    from safetensors import safe_open

    from conceptseg.build import default_weights_path, load_video_model
    from conceptseg.train.calibrate import main

    src = default_weights_path()
    if not src.exists():
        pytest.skip("the shipped model is not available")
    out = tmp_path / "cal.safetensors"
    assert main([str(src), "--out", str(out), "--images", "2", "--threads", "1"]) == 0
    video = load_video_model(out)
    shipped = load_video_model(src)
    for k, v in shipped.tracker.state_dict().items():
        assert torch.equal(video.tracker.state_dict()[k], v), k
    with safe_open(str(out), "pt") as f:
        assert "F32" not in {f.get_slice(k).get_dtype() for k in f.keys()}
    assert out.stat().st_size < 1.2 * src.stat().st_size
    assert (tmp_path / "cal.safetensors.calibration.json").exists()
