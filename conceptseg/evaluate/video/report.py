"""Video evaluation results: one record per (video, phrase) pair, the dataset-level report,
its Markdown summary and the files written (``report.json``, ``pairs.jsonl``, ``summary.md``)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...atomic import atomic_write
from ..cgf1 import CgF1Metrics, nan_to_none
from .hota import HOTA_FIELDS

__all__ = ["PairResult", "VideoReport", "video_summary_markdown", "write_video_report"]


@dataclass
class PairResult:
    """Outcome of one (video, phrase) pair.  HOTA fields are means over alpha and None when the
    pair is not a HOTA sequence (no GT and no kept prediction).  ``F1`` / ``F1_50`` follow the
    official per-pair output (2TP / (2TP + FP + FN), 1.0 when both are empty)."""

    video_id: int
    category_id: int
    phrase: str
    num_gt: int  # non-crowd GT masklets
    num_pred: int
    num_kept: int  # score >= threshold (cgF1)
    max_score: float | None
    il: str  # "TP" | "FP" | "TN" | "FN"
    tp: list[int]
    fp: list[int]
    fn: list[int]
    F1: float
    F1_50: float
    HOTA: float | None = None
    DetA: float | None = None
    AssA: float | None = None
    LocA: float | None = None
    IDSW: int | None = None
    IDF1: float | None = None


@dataclass
class VideoReport(CgF1Metrics):
    """Video evaluation result.  HOTA family in [0, 1] (means over the 19 alphas, combined over
    the evaluated pairs); the masklet cgF1 family of :class:`~conceptseg.evaluate.cgf1.CgF1Metrics`
    (``cgF1`` in 0-100, pmF1 / IL_MCC / precision / recall in [0, 1], means over IoU 0.50:0.95).
    NaN where undefined (no HOTA sequence; cgF1 / IL_MCC without ``video_np_pairs``)."""

    score_threshold: float
    iou_thresholds: list[float]
    pHOTA: float
    DetA: float
    AssA: float
    DetRe: float
    DetPr: float
    AssRe: float
    AssPr: float
    LocA: float
    OWTA: float
    hota_per_alpha: dict[str, list[float]]
    IDSW: int
    MOTA: float
    MOTP: float
    Frag: int
    IDF1: float
    counts: dict[str, Any]
    official_eps: bool = True
    pairs: list[PairResult] = field(default_factory=list, repr=False)

    def to_dict(self, include_pairs: bool = False) -> dict:
        """JSON-ready dict (NaN -> None)."""
        return self._json("pairs", include_pairs)

    def official_metrics(self, dataset_name: str = "video") -> dict[str, float]:
        """Dataset-level numbers under the key names of the official VEval evaluator
        (``<name>_mask_all_phrase_<HOTA field>`` and ``<name>_mask_demo_*``; cgF1 in [0, 1])."""
        pre = f"{dataset_name}_mask_"
        out = {f"{pre}all_phrase_{k}": float(getattr(self, "pHOTA" if k == "HOTA" else k)) for k in HOTA_FIELDS}
        out.update({
            f"{pre}demo_cgf1_micro_50_95": self.cgF1 / 100.0,
            f"{pre}demo_ilmcc_50_95": self.IL_MCC,
            f"{pre}demo_positive_micro_f1_50_95": self.pmF1,
        })
        for thr, cg, pm in ((50, self.cgF1_50, self.pmF1_50), (75, self.cgF1_75, self.pmF1_75)):
            out[f"{pre}demo_cgf1_micro_{thr}"] = cg / 100.0
            out[f"{pre}demo_ilmcc_{thr}"] = (cg / 100.0) / pm if pm else float("nan")
            out[f"{pre}demo_positive_micro_f1_{thr}"] = pm
        return out


def _f(v: Any, pct: bool = False, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.{digits}f}"


def video_summary_markdown(report: VideoReport, top_k: int = 10) -> str:
    """Markdown summary: headline table, presence confusion, counts, per-threshold table and the
    worst (video, phrase) pairs by HOTA."""
    r, il = report, report.image_level
    lines = [
        "# Video evaluation (SA-Co/VEval style, masks)", "",
        f"Score threshold {r.score_threshold:g} (HOTA keeps score > thr, cgF1 score >= thr); "
        f"cgF1 IoU thresholds 0.50:0.95 ({len(r.iou_thresholds)}); HOTA alphas 0.05:0.95.", "",
        "| pHOTA | DetA | AssA | IDSW | IDF1 | cgF1 | pmF1 | IL_MCC | cgF1@0.5 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {_f(r.pHOTA, True)} | {_f(r.DetA, True)} | {_f(r.AssA, True)} | {r.IDSW} | {_f(r.IDF1, True)} | "
        f"{_f(r.cgF1, digits=2)} | {_f(r.pmF1, True)} | {_f(r.IL_MCC)} | {_f(r.cgF1_50, digits=2)} |", "",
        "pHOTA, DetA, AssA, IDF1, pmF1 in %.  "
        f"DetRe {_f(r.DetRe, True)} · DetPr {_f(r.DetPr, True)} · AssRe {_f(r.AssRe, True)} · "
        f"AssPr {_f(r.AssPr, True)} · LocA {_f(r.LocA, True)} · MOTA {_f(r.MOTA, True)} · Frag {r.Frag}.", "",
        "## Pair level (presence)", "",
        f"TP {il.tp} · FP {il.fp} · TN {il.tn} · FN {il.fn} — precision {il.precision:.4f}, "
        f"recall {il.recall:.4f}, MCC {_f(r.IL_MCC)}.", "",
        "## Counts", "",
    ]
    lines += [f"- {k}: {v}" for k, v in r.counts.items()]
    lines += ["", "## Masklets per IoU threshold", "",
              "| IoU | TP | FP | FP (pos.) | FN | precision | recall | pmF1 | cgF1 |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r.per_threshold:
        lines.append(f"| {t.iou:.2f} | {t.tp} | {t.fp} | {t.positive_fp} | {t.fn} | {_f(t.precision)} | "
                     f"{_f(t.recall)} | {_f(t.pmF1)} | {_f(t.cgF1, digits=2)} |")
    scored = sorted((p for p in r.pairs if p.HOTA is not None), key=lambda p: (p.HOTA, p.video_id, p.category_id))
    if scored:
        lines += ["", "## Worst pairs by HOTA", "", "| video | phrase | GT | kept | HOTA | DetA | AssA | IDSW | F1 |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for p in scored[:top_k]:
            lines.append(f"| {p.video_id} | {p.phrase.replace('|', '/')} | {p.num_gt} | {p.num_kept} | "
                         f"{_f(p.HOTA, True)} | {_f(p.DetA, True)} | {_f(p.AssA, True)} | {p.IDSW} | {p.F1:.3f} |")
    lines.append("")
    return "\n".join(lines)


def write_video_report(report: VideoReport, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``report.json`` (+ the official key names), ``pairs.jsonl`` (one line per pair)
    and ``summary.md`` into ``out_dir``, each atomically.  Returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict()
    payload["official_metrics"] = nan_to_none(report.official_metrics())
    pairs = report.to_dict(include_pairs=True)["pairs"]
    paths = {"json": out / "report.json", "pairs": out / "pairs.jsonl", "markdown": out / "summary.md"}
    atomic_write(paths["json"], lambda t: Path(t).write_text(json.dumps(payload, indent=1, default=float)))
    atomic_write(paths["pairs"], lambda t: Path(t).write_text("".join(json.dumps(p) + "\n" for p in pairs)))
    atomic_write(paths["markdown"], lambda t: Path(t).write_text(video_summary_markdown(report)))
    return {k: str(v) for k, v in paths.items()}
