"""Learning curves of a training run: ``python -m conceptseg.train.plot RUN [RUN...] --out curve.png``.

Reads ``RUN/metrics.jsonl`` (loss lines every ``--log-every`` steps, quick evaluations every
``--eval-every`` steps) and draws, against the step (or, with ``--x images``, the number of
training images seen, the fair axis when stages differ in batch size): the total loss, the matched-query box IoU
and presence gap (training batches, smoothed), and the quick evaluation's cgF1 / presence AUC on
held-out scenes. Several runs (e.g. the pretraining then the detection stage) are drawn one
after the other on the same step axis.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

__all__ = ["read_metrics", "plot_runs"]


def read_metrics(run: str | Path) -> tuple[list[dict], list[dict]]:
    """(training log lines, evaluation lines) of a run directory, steps increasing."""
    train, evals = [], []
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a torn last line of a killed run
            continue
        lst = evals if "eval" in rec else train
        # a run resumed from an earlier checkpoint logs those steps again: keep the newest
        while lst and lst[-1].get("step", -1) >= rec.get("step", 0):
            lst.pop()
        lst.append(rec)
    return train, evals


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if len(y) < k or k <= 1:
        return y
    return np.convolve(y, np.ones(k) / k, mode="valid")


def _batch_images(run: Path) -> int:
    try:
        return int(json.loads((run / "train_config.json").read_text())["batch_images"])
    except (OSError, ValueError, KeyError):
        return 1


def plot_runs(runs: list[str | Path], out: str | Path, smooth: int = 10, x: str = "step") -> Path:
    import matplotlib  # optional (the `eval` extra): imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    # one colour per run in every panel; in the middle panel one line style per quantity
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    share = axes[1].twinx()  # IoU and attribute accuracies live on 0..1
    styles = {"pres_gap": ("-", axes[1]), "matched_iou": ("--", share),
              "tok_acc_shape": (":", share), "top1": ("-.", share)}
    offset = 0
    for i, run in enumerate(runs):
        train, evals = read_metrics(run)
        if not train:
            continue
        c = colours[i % len(colours)]
        name = Path(run).name
        per_step = _batch_images(Path(run)) if x == "images" else 1
        steps = np.array([r["step"] for r in train]) * per_step + offset
        k = min(smooth, max(1, len(train) // 5))
        cut = lambda y: (steps[k - 1:] if len(y) >= k and k > 1 else steps, _smooth(y, k))  # noqa: E731
        axes[0].plot(*cut(np.array([r["loss"] for r in train])), color=c, label=name)
        for key, (ls, ax) in styles.items():
            if key in train[0]:
                ax.plot(*cut(np.array([r.get(key, np.nan) for r in train])), ls, color=c)
        if evals:
            es = np.array([e["step"] for e in evals]) * per_step + offset
            axes[2].plot(es, [e["eval"]["cgF1"] for e in evals], "o-", color=c,
                         label=f"{name}: held-out scenes")
            axes[2].plot(es, [e["eval_test"]["cgF1"] for e in evals], "s--", color=c,
                         label=f"{name}: held-out pairs split")
        offset = int(steps[-1])
    from matplotlib.lines import Line2D  # optional, as above

    axes[1].legend([Line2D([], [], color="k", linestyle=ls) for ls, _ in styles.values()],
                   ["presence logit gap, pos - neg (left)", "matched box IoU (right)",
                    "ViT token shape accuracy (right)", "pretraining retrieval top-1 (right)"],
                   fontsize=7, loc="upper left")
    share.set_ylim(0, 1.05)
    axes[0].set_title("training loss (all terms, smoothed)")
    axes[1].set_title("training batches")
    axes[2].set_title("quick evaluation on held-out scenes")
    from matplotlib.ticker import MaxNLocator  # optional, as above

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("training images seen" if x == "images" else "step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if axes[2].get_legend_handles_labels()[0]:
        axes[2].legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    try:
        return atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories, in training order")
    p.add_argument("--out", default="learning_curve.png")
    p.add_argument("--smooth", type=int, default=10, help="moving average over log lines")
    p.add_argument("--x", choices=["step", "images"], default="step",
                   help="x axis: optimizer steps, or training images seen (batch_images from "
                        "each run's train_config.json)")
    a = p.parse_args(argv)
    print(plot_runs(a.runs, a.out, a.smooth, a.x))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
