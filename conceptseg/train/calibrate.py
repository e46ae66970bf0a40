"""Calibrate a trained detector's scores for the SA-Co decision rule (score > 0.5).

    python -m conceptseg.train.calibrate runs/tiny/model.safetensors --out runs/tiny/calibrated.safetensors

Why: a model trained with a balanced per-query BCE gives roughly calibrated probabilities, and
for calibrated probabilities the F1-optimal threshold sits well under 0.5 (about half the best
F1), so at SA-Co's fixed 0.5 it misses instances it ranks correctly (on the synthetic test set
the threshold sweep of our GPU-trained model peaked near 0.1). SA-Co fixes the threshold, so we
move the model instead, by two scalars:

* ``presence_shift`` is added to the bias of the presence head's last layer
  (``transformer.decoder.presence_token_head.layers.2.bias``, a weight of the official layout);
* ``score_shift`` is added to every query logit: the config's ``score_bias`` (0 in official
  models; stored with our checkpoints).

They are chosen on a grid to maximise cgF1 on *validation* scenes: the training distribution
(no held-out colour-shape pair in any scene) at a seed used neither for training nor for the
test split of ``conceptseg eval``; the test set is never looked at. The model runs once; every
grid point re-scores the stored logits (:func:`conceptseg.train.quick_eval.summarize`). The
whole grid is written to ``OUT.calibration.json`` beside the weights.

A video checkpoint (detector + tracker, like the shipped model) stays one: the tracker is kept
and a float16 file is written as float16.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ..atomic import atomic_write
from ..build import load, load_video_model, save_video_checkpoint
from ..data.splits import VALIDATION_SEED
from ..errors import ConceptSegError, NoTrackerError
from ..runtime import check_output_path
from .detect import save_weights
from .quick_eval import collect, summarize

__all__ = ["presence_bias", "apply_shifts", "calibrate"]

PRESENCE_GRID = np.arange(-1.0, 6.01, 0.25)
SCORE_GRID = np.arange(-1.0, 3.01, 0.25)


def presence_bias(model) -> torch.nn.Parameter:
    """The bias whose shift moves every presence logit of ``model`` (a Sam3Detector)."""
    return model.transformer.decoder.presence_token_head.layers[-1].bias


@torch.no_grad()
def apply_shifts(model, presence_shift: float, score_shift: float) -> None:
    """Fold the two shifts into ``model`` (in place; its config's score_bias changes)."""
    presence_bias(model).add_(presence_shift)
    bias = model.config.score_bias + score_shift
    model.config = dataclasses.replace(model.config, score_bias=bias)
    model.dot_prod_scoring.bias = bias


def calibrate(model, num_images: int = 200, seed: int = VALIDATION_SEED,
              presence_grid=PRESENCE_GRID, score_grid=SCORE_GRID) -> tuple[float, float, list]:
    """Returns (presence_shift, score_shift, table) maximising validation cgF1 (ties: the
    smallest total shift); ``model`` is not changed. ``table`` rows: {presence_shift,
    score_shift, cgF1, pmF1, IL_MCC}."""
    rows = collect(model, num_images, seed=seed, split="train")
    table = []
    for dp in presence_grid:
        for dq in score_grid:
            r = summarize(rows, presence_shift=float(dp), score_shift=float(dq))
            table.append({"presence_shift": round(float(dp), 4), "score_shift": round(float(dq), 4),
                          "cgF1": r["cgF1"], "pmF1": r["pmF1"], "IL_MCC": r["IL_MCC"]})
    best = max(table, key=lambda t: (round(t["cgF1"], 6),
                                     -abs(t["presence_shift"]) - abs(t["score_shift"])))
    return best["presence_shift"], best["score_shift"], table


def is_float16(path: str) -> bool:
    """Whether a checkpoint stores its floating-point weights as float16 (our safetensors)."""
    if not str(path).endswith(".safetensors") or not Path(path).is_file():
        return False
    with safe_open(str(path), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    return "F16" in dtypes and "F32" not in dtypes


def _load_video(path: str):
    """The video model of ``path``, or None when it holds a detector only."""
    try:
        return load_video_model(path)
    except NoTrackerError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conceptseg.train.calibrate",
                                description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="detector or video weights (any layout)")
    p.add_argument("--out", required=True, help="calibrated weights (our layout; a video "
                                                "checkpoint keeps its tracker and float16)")
    p.add_argument("--images", type=int, default=200, help="validation scenes")
    p.add_argument("--seed", type=int, default=VALIDATION_SEED)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    check_output_path(args.out, "--out")
    video = _load_video(args.checkpoint)
    model = (video.detector if video is not None else load(args.checkpoint)).eval()
    dp, dq, table = calibrate(model, args.images, args.seed)
    apply_shifts(model, dp, dq)
    half = is_float16(args.checkpoint)
    path = (save_video_checkpoint(video, Path(args.out), half=half) if video is not None
            else save_weights(model, Path(args.out), half=half))
    before = next(r for r in table if r["presence_shift"] == 0.0 and r["score_shift"] == 0.0)
    after = next(r for r in table if (r["presence_shift"], r["score_shift"]) == (dp, dq))
    report = json.dumps({"checkpoint": args.checkpoint, "presence_shift": dp, "score_shift": dq,
                         "images": args.images, "seed": args.seed, "table": table}, indent=1)
    atomic_write(str(path) + ".calibration.json", lambda tmp: Path(tmp).write_text(report))
    print(f"presence shift {dp:+.2f}, score shift {dq:+.2f}: validation cgF1 "
          f"{before['cgF1']:.2f} -> {after['cgF1']:.2f} (pmF1 {before['pmF1']:.3f} -> "
          f"{after['pmF1']:.3f}, IL_MCC {before['IL_MCC']:.3f} -> {after['IL_MCC']:.3f}); "
          f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConceptSegError as e:  # one line and status 2, as the conceptseg commands do
        print(f"python -m conceptseg.train.calibrate: error: {e}", file=sys.stderr)
        sys.exit(2)
