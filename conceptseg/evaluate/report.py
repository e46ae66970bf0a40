"""Human-readable outputs for an SA-Co evaluation: JSON, Markdown and PNG plots.

``write_report(report, preds, gt, out_dir)`` writes

* ``report.json``      - every number of the :class:`SacoReport` (+ the score sweep),
* ``datapoints.jsonl`` - one line per evaluated datapoint (for error analysis),
* ``summary.md``       - headline metrics, per-threshold table, best/worst phrases,
* ``phrase_f1.png``    - per-phrase F1 (mean over IoU 0.50:0.95), top and bottom phrases,
* ``pr_curve.png``     - precision-recall while sweeping the score threshold, and
  cgF1 / pmF1 / IL_MCC against the threshold,
* ``score_hist.png``   - prediction scores on positive vs negative datapoints,
* ``calibration.png``  - reliability diagram of the per-datapoint max score as a
  predictor of "the concept is present" (with expected calibration error).

Plots use matplotlib's object API with the Agg canvas, so no global backend is changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write
from .cgf1 import nan_to_none
from .ground_truth import GroundTruth, load_ground_truth
from .predictions import Predictions, load_predictions
from .saco import SacoReport, score_threshold_sweep

__all__ = ["write_report", "DEFAULT_SWEEP"]

#: Score thresholds of the precision-recall sweep.
DEFAULT_SWEEP = tuple(float(x) for x in np.round(np.arange(0.05, 1.0, 0.05), 2))


def _figure(w: float = 7.0, h: float = 4.5):
    # matplotlib is optional (the [eval] extra): imported only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def _plot_phrase_f1(report: SacoReport, path: str, top_k: int = 15) -> str:
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


def _plot_pr(sweep: list[dict], report: SacoReport, path: str) -> str:
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


def _plot_hist(report: SacoReport, preds: Predictions, path: str) -> str:
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


def _calibration(report: SacoReport, n_bins: int = 10) -> dict[str, Any]:
    """Reliability of max-score-per-datapoint as P(GT present); no prediction = score 0."""
    s = np.array([r.max_score if r.max_score is not None else 0.0 for r in report.datapoints], dtype=float)
    y = np.array([r.num_gt > 0 for r in report.datapoints], dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        conf = float(s[sel].mean()) if n else None
        acc = float(y[sel].mean()) if n else None
        if n:
            ece += n / len(s) * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n, "mean_score": conf, "frac_present": acc})
    return {"bins": bins, "ece": float(ece) if len(s) else None}


def _plot_calibration(cal: dict, path: str) -> str:
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


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.4f}"


def _markdown(report: SacoReport, cal: dict, sweep: list[dict], top_k: int = 10) -> str:
    r, il, c = report, report.image_level, report.counts
    lines = [
        f"# SA-Co evaluation ({r.iou_type})", "",
        f"Score threshold {r.score_threshold:g}; IoU thresholds 0.50:0.95 ({len(r.iou_thresholds)}); "
        f"{'official epsilons' if r.official_eps else 'exact ratios'}.", "",
        "| cgF1 | pmF1 | IL_MCC | precision | recall | cgF1@0.5 | cgF1@0.75 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r.cgF1:.2f} | {_fmt(r.pmF1, True)} | {r.IL_MCC:.4f} | {_fmt(r.precision, True)} | "
        f"{_fmt(r.recall, True)} | {r.cgF1_50:.2f} | {r.cgF1_75:.2f} |", "",
        "pmF1, precision and recall in %; precision counts false positives on negative datapoints too "
        f"(positive-only precision: {_fmt(r.positive_micro_precision, True)}).", "",
        "## Image level (presence)", "",
        f"TP {il.tp} · FP {il.fp} · TN {il.tn} · FN {il.fn} — precision {il.precision:.4f}, recall {il.recall:.4f}, "
        f"FPR {il.FPR:.4f}, MCC {il.MCC:.4f}; presence calibration ECE "
        f"{_fmt(cal['ece'])}.", "",
        "## Counts", "",
    ]
    lines += [f"- {k}: {v}" for k, v in c.items()]
    lines += ["", "## Per IoU threshold", "", "| IoU | TP | FP | FP (pos.) | FN | precision | recall | pmF1 | cgF1 |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r.per_threshold:
        lines.append(f"| {t.iou:.2f} | {t.tp} | {t.fp} | {t.positive_fp} | {t.fn} | {_fmt(t.precision)} | "
                     f"{_fmt(t.recall)} | {_fmt(t.pmF1)} | {t.cgF1:.2f} |")
    if sweep:
        best = max(sweep, key=lambda s: s["cgF1"])
        lines += ["", f"Best score threshold in the sweep: {best['score_threshold']:g} (cgF1 {best['cgF1']:.2f})."]
    phrases = sorted((p for p in r.per_phrase.values() if p.f1 is not None), key=lambda p: (-p.f1, p.phrase))
    k = int(np.argmin(np.abs(np.asarray(r.iou_thresholds) - 0.5)))
    iou = f"{r.iou_thresholds[k]:.2f}"
    for title, group in (("Best phrases", phrases[:top_k]), ("Worst phrases", phrases[::-1][:top_k])):
        if not group:
            continue
        lines += ["", f"## {title}", "", f"| phrase | datapoints | positive | TP@{iou} | FP@{iou} | FN@{iou} | F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for p in group:
            lines.append(f"| {p.phrase.replace('|', '/')} | {p.num_datapoints} | {p.num_positive} | "
                         f"{p.tp[k]} | {p.fp[k]} | {p.fn[k]} | {p.f1:.3f} |")
    lines += ["", "Plots: phrase_f1.png, pr_curve.png, score_hist.png, calibration.png.", ""]
    return "\n".join(lines)


def write_report(report: SacoReport, preds: Predictions | Any, gt: GroundTruth | Any, out_dir: str | os.PathLike,
                 sweep_thresholds: Sequence[float] | None = DEFAULT_SWEEP, top_k: int = 15) -> dict[str, str]:
    """Write JSON, Markdown and PNG outputs for ``report`` into ``out_dir``.

    ``preds``/``gt`` may be loaded objects or anything the loaders accept.  The PR sweep
    re-evaluates at ``sweep_thresholds`` (plus the report's threshold); pass None to skip
    it.  Returns {name: path} of the written files.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if not isinstance(gt, GroundTruth):
        gt = load_ground_truth(gt)
    if not isinstance(preds, Predictions):
        preds = load_predictions(preds, gt)
    sweep: list[dict] = []
    if sweep_thresholds:
        thr = sorted(set(float(t) for t in sweep_thresholds) | {report.score_threshold})
        sweep = score_threshold_sweep(gt, preds, thr, iou_type=report.iou_type, official_eps=report.official_eps)
    cal = _calibration(report)
    paths = {k: os.path.join(out_dir, v) for k, v in {
        "json": "report.json", "datapoints": "datapoints.jsonl", "markdown": "summary.md", "phrase_f1": "phrase_f1.png",
        "pr_curve": "pr_curve.png", "score_hist": "score_hist.png", "calibration": "calibration.png"}.items()}
    payload = report.to_dict()
    payload["official_metrics"] = report.official_metrics()
    payload["score_sweep"] = sweep
    payload["calibration"] = cal
    payload = nan_to_none(payload)
    lines = "".join(json.dumps(d) + "\n" for d in report.to_dict(include_datapoints=True)["datapoints"])
    atomic_write(paths["json"], lambda t: Path(t).write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8"))
    atomic_write(paths["datapoints"], lambda t: Path(t).write_text(lines, encoding="utf-8"))
    atomic_write(paths["markdown"], lambda t: Path(t).write_text(_markdown(report, cal, sweep), encoding="utf-8"))
    _plot_phrase_f1(report, paths["phrase_f1"], top_k)
    if sweep:
        _plot_pr(sweep, report, paths["pr_curve"])
    else:
        del paths["pr_curve"]
    _plot_hist(report, preds, paths["score_hist"])
    _plot_calibration(cal, paths["calibration"])
    return paths
