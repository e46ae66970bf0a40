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
  predictor of "the concept is present" (with expected calibration error),
* ``strata_<name>.png`` - precision / recall / F1 per stratum (size, occlusion, concept frequency,
  crowding, phrase form; :mod:`conceptseg.evaluate.strata`), also tabled in summary.md.

The plots are drawn by :mod:`conceptseg.evaluate.plots`.
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
from .plots import plot_calibration, plot_hist, plot_phrase_f1, plot_pr
from .predictions import Predictions, load_predictions
from .saco import SacoReport, score_threshold_sweep
from .strata_report import strata_section

__all__ = ["write_report", "DEFAULT_SWEEP"]

#: Score thresholds of the precision-recall sweep.
DEFAULT_SWEEP = tuple(float(x) for x in np.round(np.arange(0.05, 1.0, 0.05), 2))


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
                 sweep_thresholds: Sequence[float] | None = DEFAULT_SWEEP, top_k: int = 15,
                 frequencies: tuple[dict[str, float], int] | None = None) -> dict[str, str]:
    """Write JSON, Markdown and PNG outputs for ``report`` into ``out_dir``.

    ``preds``/``gt`` may be loaded objects or anything the loaders accept.  The PR sweep
    re-evaluates at ``sweep_thresholds`` (plus the report's threshold); pass None to skip
    it.  ``frequencies`` (phrase -> share of training images, number of training images) feeds
    the concept-frequency strata (None: the synthetic engine's sampler, or skipped).  Returns
    {name: path} of the written files.
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
    strata, strata_lines, strata_plots = strata_section(report, gt, preds, out_dir, frequencies)
    payload["strata"] = strata
    payload = nan_to_none(payload)
    texts = {
        "json": json.dumps(payload, indent=1, default=float),
        "datapoints": "".join(json.dumps(d) + "\n" for d in report.to_dict(include_datapoints=True)["datapoints"]),
        "markdown": _markdown(report, cal, sweep).rstrip("\n") + "\n" + "\n".join(strata_lines) + "\n",
    }
    for name, text in texts.items():
        atomic_write(paths[name], lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    plot_phrase_f1(report, paths["phrase_f1"], top_k)
    if sweep:
        plot_pr(sweep, report, paths["pr_curve"])
    else:
        del paths["pr_curve"]
    plot_hist(report, preds, paths["score_hist"])
    plot_calibration(cal, paths["calibration"])
    return {**paths, **strata_plots}
