"""The stratified failure analysis of an image report: ``strata.json``-ready numbers, the
summary.md section (a table per stratification and the three weakest strata) and one
``strata_<name>.png`` per stratification (skipped with a note when matplotlib is missing)."""

from __future__ import annotations

import os

from ..errors import MissingDependencyError
from .ground_truth import GroundTruth
from .plots import plot_strata
from .predictions import Predictions
from .saco import SacoReport
from .strata import MIN_SUPPORT, RARE_FRACTION, StratumStats, stratify, weakest

__all__ = ["strata_section"]


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _markdown(strata: dict[str, list[StratumStats]], weak: list[StratumStats], notes: list[str],
              plots: list[str]) -> list[str]:
    lines = ["", "## Failure analysis by stratum", "",
             f"Precision, recall and F1 at IoU 0.5 (the evaluator's matching) and cgF1 (IoU 0.50:0.95) "
             f"per stratum; support = ground-truth instances. Strata with fewer than {MIN_SUPPORT} "
             "instances are listed but not ranked.", ""]
    if weak:
        lines.append("Weakest strata (lowest F1 at IoU 0.5):")
        lines += [f"{i + 1}. {s.stratification} = {s.label}: F1 {_f(s.f1)} (precision {_f(s.precision)}, "
                  f"recall {_f(s.recall)}; {s.support} instances)" for i, s in enumerate(weak)]
    else:
        lines.append(f"No stratum has {MIN_SUPPORT} or more instances: none ranked.")
    for name, stats in strata.items():
        lines += ["", f"### By {name.replace('_', ' ')}", "",
                  "| stratum | support | TP | FP | FN | precision | recall | F1 | cgF1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {s.label} | {s.support} | {s.tp} | {s.fp} | {s.fn} | {_f(s.precision)} | {_f(s.recall)} | "
                  f"{_f(s.f1)} | {'n/a' if s.cgF1 is None else f'{s.cgF1:.2f}'} |" for s in stats]
    lines += ["", "Definitions: size = COCO area ranges (small < 32², medium < 96², large) of the mask; "
              "relative area = mask area / image area; occlusion = the instance's visible fraction; "
              f"concept frequency = share of training images showing the phrase (rare < {100 * RARE_FRACTION:g} %); "
              "crowding = instances of the phrase in the image; phrase form = the attributes the phrase names. "
              "A false positive counts in the stratum of its own area (size), of the instance it overlaps "
              "most (occlusion) or of its datapoint."]
    lines += [f"- note: {n}" for n in notes]
    if plots:
        lines += ["", "Plots: " + ", ".join(os.path.basename(p) for p in plots) + "."]
    return lines


def strata_section(report: SacoReport, gt: GroundTruth, preds: Predictions, out_dir: str,
                   frequencies: tuple[dict[str, float], int] | None = None) -> tuple[dict, list[str], dict[str, str]]:
    """(JSON payload, summary.md lines, {plot name: path}) of the stratified analysis."""
    strata, notes = stratify(report, gt, preds, frequencies)
    weak = weakest(strata)
    plots: dict[str, str] = {}
    try:
        for name, stats in strata.items():
            if stats:
                plots[f"strata_{name}"] = plot_strata(name, stats, os.path.join(out_dir, f"strata_{name}.png"),
                                                      MIN_SUPPORT)
    except MissingDependencyError as e:
        notes.append(f"stratum plots skipped: {e}")
    payload = {"min_support": MIN_SUPPORT, "rare_fraction": RARE_FRACTION, "notes": notes,
               "weakest": [{"stratification": s.stratification, **s.to_dict()} for s in weak],
               "strata": {name: [s.to_dict() for s in stats] for name, stats in strata.items()}}
    return payload, _markdown(strata, weak, notes, list(plots.values())), plots
