"""The PNG plots of an SA-Co image report: per-phrase F1, precision-recall over the score
threshold, score histograms and the presence reliability diagram.

matplotlib's object API with the Agg canvas, so no global backend is changed; matplotlib is
optional (the ``eval`` extra) and imported only when a figure is drawn.
"""

from __future__ import annotations

import numpy as np

from ..atomic import atomic_write
from ..errors import require
from .predictions import Predictions
from .saco import SacoReport

__all__ = ["plot_phrase_f1", "plot_pr", "plot_hist", "plot_calibration", "plot_strata",
           "plot_click_curves"]


def _figure(w: float = 7.0, h: float = 4.5):
    # matplotlib is optional (the [eval] extra): imported when a plot is drawn, or a one-line error
    figure, agg = require("matplotlib.figure", "eval"), require("matplotlib.backends.backend_agg", "eval")
    fig = figure.Figure(figsize=(w, h), dpi=110)
    agg.FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def plot_phrase_f1(report: SacoReport, path: str, top_k: int = 15) -> str:
    stats = sorted((p for p in report.per_phrase.values() if p.f1 is not None), key=lambda p: (-p.f1, p.phrase))
    fig = _figure(10, max(3.0, 0.28 * min(len(stats), 2 * top_k) + 1.5))
    if not stats:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no phrase with GT or predictions", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    groups = [("top", stats[:top_k])]
    if len(stats) > top_k:
        groups.append(("bottom", stats[-min(top_k, len(stats) - top_k):]))
    for i, (name, group) in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), i + 1)
        labels = [f"{p.phrase[:30]} (n={p.num_datapoints})" for p in group][::-1]
        ax.barh(range(len(group)), [p.f1 for p in group][::-1], color="tab:green" if name == "top" else "tab:red")
        ax.set_yticks(range(len(group)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("F1 (mean IoU 0.50:0.95)")
        ax.set_title(f"{name} {len(group)} phrases")
    return _save(fig, path)


def plot_pr(sweep: list[dict], report: SacoReport, path: str) -> str:
    fig = _figure(11, 4.5)
    ax = fig.add_subplot(1, 2, 1)
    rec = [s["recall"] for s in sweep]
    ax.plot(rec, [s["precision"] for s in sweep], "o-", ms=3, label="precision (all datapoints)")
    ax.plot(rec, [s["positive_micro_precision"] for s in sweep], "s--", ms=3, label="precision (positive datapoints)")
    for s in sweep:
        if abs(s["score_threshold"] - report.score_threshold) < 1e-9:
            ax.plot([s["recall"]], [s["precision"]], "r*", ms=12, label=f"operating point (score {report.score_threshold:g})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"PR over score threshold ({report.iou_type}, IoU 0.50:0.95)")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    thr = [s["score_threshold"] for s in sweep]
    ax.plot(thr, [s["cgF1"] / 100 for s in sweep], "o-", ms=3, label="cgF1 / 100")
    ax.plot(thr, [s["pmF1"] for s in sweep], "s--", ms=3, label="pmF1")
    ax.plot(thr, [s["IL_MCC"] for s in sweep], "^:", ms=3, label="IL_MCC")
    ax.axvline(report.score_threshold, color="gray", lw=0.8)
    ax.set_xlabel("score threshold")
    ax.set_ylim(min(0.0, min(s["IL_MCC"] for s in sweep)), 1.02)
    ax.legend(fontsize=7)
    ax.set_title("metrics vs score threshold")
    return _save(fig, path)


def _scores_by_presence(report: SacoReport, preds: Predictions) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = [], []
    for r in report.datapoints:
        (pos if r.num_gt > 0 else neg).extend(p.score for p in preds.for_image(r.image_id))
    return np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)


def plot_hist(report: SacoReport, preds: Predictions, path: str) -> str:
    pos, neg = _scores_by_presence(report, preds)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0, 1, 41)
    if len(pos):
        ax.hist(pos, bins=bins, alpha=0.6, label=f"on positive datapoints (n={len(pos)})", color="tab:blue")
    if len(neg):
        ax.hist(neg, bins=bins, alpha=0.6, label=f"on negative datapoints (n={len(neg)})", color="tab:orange")
    ax.axvline(report.score_threshold, color="k", lw=0.8, ls="--")
    ax.set_yscale("log" if len(pos) + len(neg) > 0 else "linear")
    ax.set_xlabel("prediction score")
    ax.set_ylabel("count")
    ax.set_title("prediction scores by datapoint type")
    if len(pos) + len(neg):
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_calibration(cal: dict, path: str) -> str:
    fig = _figure(6, 6)
    ax = fig.add_subplot(2, 1, 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    pts = [(b["mean_score"], b["frac_present"]) for b in cal["bins"] if b["count"]]
    if pts:
        ax.plot(*zip(*pts), "o-")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction with concept present")
    ece = cal["ece"]
    ax.set_title("presence calibration" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax = fig.add_subplot(2, 1, 2)
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in cal["bins"]], [b["count"] for b in cal["bins"]], width=0.09)
    ax.set_xlim(0, 1)
    ax.set_xlabel("max prediction score of the datapoint (0 if none)")
    ax.set_ylabel("datapoints")
    return _save(fig, path)


def plot_strata(name: str, stats: list, path: str, min_support: int) -> str:
    """Precision, recall and F1 at IoU 0.5 per stratum of one stratification (``StratumStats``);
    strata under ``min_support`` ground-truth instances are hatched."""
    fig = _figure(max(5.0, 1.1 * len(stats) + 2.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(stats))
    groups = []
    for off, key, color in ((-0.27, "precision", "tab:blue"), (0.0, "recall", "tab:orange"), (0.27, "f1", "tab:green")):
        vals = [getattr(s, key) if getattr(s, key) is not None else 0.0 for s in stats]
        groups.append(ax.bar(x + off, vals, width=0.26, color=color, label=key + " @IoU 0.5"))
    ax.legend(fontsize=7)  # before hatching, so that the legend keys stay plain
    for bars in groups:
        for b, s in zip(bars, stats):
            if s.support < min_support:
                b.set_hatch("//")
                b.set_alpha(0.5)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{s.label}\n(n={s.support})" for s in stats], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"by {name.replace('_', ' ')} (hatched: fewer than {min_support} instances)")
    return _save(fig, path)


def plot_click_curves(curves: dict[str, list[float]], path: str) -> str:
    """mIoU after k clicks (k = 0..max) for each starting point of the click simulator."""
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for (name, ys), style in zip(curves.items(), ("o-", "s--", "^:")):
        ax.plot(range(len(ys)), ys, style, ms=3, label=name.replace("_", " "))
    for t in (0.85, 0.9):
        ax.axhline(t, color="gray", lw=0.6, ls=":")
    n = max((len(ys) for ys in curves.values()), default=1)
    ax.set_xticks(range(0, n, max(1, (n + 9) // 10)))  # whole clicks
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1.02)
    ax.set_title("interactive segmentation: mIoU vs clicks")
    ax.legend(fontsize=8)
    return _save(fig, path)
