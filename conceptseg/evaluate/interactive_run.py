"""``conceptseg eval --interactive``: run the click simulator (:mod:`.interactive`) over every
ground-truth instance of a dataset, resumably, and write interactive.json, interactive.md and
the mIoU-vs-clicks plot.

Datasets: SA-Co style JSON (image entries with ``text_input``; an instance listed under several
phrases, as the synthetic split's ``instance_index``, is simulated once with its most specific
phrase, the one with the fewest instances) or plain COCO (category names as phrases).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import InputError, MissingDependencyError
from ..inference.image import ImagePredictor
from ..ops.masks import rle_decode
from ..runtime import progress as progress_bar
from .inputs import load_json
from .interactive import IOU_TARGETS, MAX_CLICKS, simulate_instance, start_from_text, summarize_curves
from .plots import plot_click_curves
from .predict import image_paths
from .segmentation import parse_geometry
from .writer import ResumableLog, file_hash

__all__ = ["GTInstance", "interactive_instances", "run_interactive"]

MODES = ("from_nothing", "from_text")


@dataclass
class GTInstance:
    """One ground-truth instance to segment by clicks."""

    key: str  # unique within its image (annotation id, or the synthetic instance_index)
    phrase: str  # the concept prompt of --from-text
    rle: dict  # compressed RLE at the image size
    num_same_phrase: int  # instances of the phrase in the image (picks the most specific phrase)


def interactive_instances(gt_path: str | os.PathLike) -> dict[str, list[GTInstance]]:
    """file_name -> its non-crowd instances (see the module docstring)."""
    data = load_json(gt_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{gt_path}: expected a COCO / SA-Co JSON with an 'images' list")
    images = {im["id"]: im for im in data["images"] if isinstance(im, dict) and "id" in im}
    names = {c.get("id"): str(c.get("name", "")) for c in data.get("categories") or [] if isinstance(c, dict)}
    per_dp: dict = {}
    for a in data.get("annotations") or []:
        if isinstance(a, dict) and not a.get("iscrowd") and a.get("image_id") in images:
            per_dp.setdefault(a["image_id"], []).append(a)
    out: dict[str, dict[str, GTInstance]] = {}
    for iid, anns in per_dp.items():
        im = images[iid]
        for a in anns:
            phrase = im.get("text_input") if "text_input" in im else names.get(a.get("category_id"))
            if not phrase:
                raise InputError(f"{gt_path}: annotation {a.get('id')} has no phrase (no text_input, "
                                 "no category name)")
            rle, _ = parse_geometry(a.get("segmentation"), a.get("bbox"), im["height"], im["width"], polygons=True)
            if rle is None:
                continue
            key = str(a["instance_index"]) if "instance_index" in a else str(a.get("id"))
            n = sum(1 for b in anns if ("text_input" in im or b.get("category_id") == a.get("category_id")))
            cand = GTInstance(key, str(phrase), rle, n)
            old = out.setdefault(im["file_name"], {}).get(key)
            if old is None or n < old.num_same_phrase:
                out[im["file_name"]][key] = cand
    return {f: list(v.values()) for f, v in sorted(out.items())}


def _markdown(summary: dict, max_clicks: int, command: str) -> str:
    modes = [m for m in MODES if summary.get(m, {}).get("num_instances")]
    ks = sorted({k for k in (0, 1, 3, 5, 10) if k < max_clicks} | {max_clicks})
    lines = ["# Interactive segmentation (click simulator)", "",
             f"{summary['num_instances']} instances, up to {max_clicks} clicks each. NoC@t = clicks to reach "
             f"IoU >= t; an instance that never reaches t counts as {max_clicks} (the standard convention). "
             "mIoU@k = mean IoU after k clicks (k = 0: the starting mask).", "",
             "| start | NoC@85 | NoC@90 | never 90 | " + " | ".join(f"mIoU@{k}" for k in ks) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(ks)]
    for m in modes:
        s = summary[m]
        at = s["mIoU_at_clicks"]
        cells = [f"{at[k]:.3f}" for k in ks]
        lines.append(f"| {m.replace('_', ' ')} | {s['NoC@85']:.2f} | {s['NoC@90']:.2f} | "
                     f"{100 * s['never_90']:.1f} % | " + " | ".join(cells) + " |")
    if len(modes) == 2:
        a, b = summary["from_nothing"], summary["from_text"]
        lines += ["", f"The text prompt saves {a['NoC@85'] - b['NoC@85']:.2f} clicks at IoU 0.85 and "
                      f"{a['NoC@90'] - b['NoC@90']:.2f} at IoU 0.90 per instance."]
    lines += ["", "Plot: interactive_miou.png (mIoU vs clicks).", "", f"Command: `{command}`", ""]
    return "\n".join(lines)


def run_interactive(video_model, gt_path: str | os.PathLike, images_dir: str | None, out: Path,
                    max_clicks: int = MAX_CLICKS, from_text: bool = False, model_name: str = "",
                    command: str = "", progress: bool = True) -> dict:
    """Simulate clicks on every instance of ``gt_path`` (resumable through
    ``out/interactive.partial.jsonl``); writes interactive.json / .md / _miou.png; returns the
    summary."""
    by_file = interactive_instances(gt_path)
    paths = image_paths(gt_path, by_file, images_dir)
    modes = MODES if from_text else MODES[:1]
    log = ResumableLog(out / "interactive.partial.jsonl", lambda r: r["image"], key={
        "gt": file_hash(gt_path), "model": model_name, "max_clicks": max_clicks, "modes": list(modes)})
    pred = ImagePredictor(video_model)
    todo = [f for f in by_file if f not in log.records]
    if len(todo) < len(by_file):
        print(f"resuming: {len(by_file) - len(todo)} of {len(by_file)} images already done")
    try:
        for name in progress_bar(todo, desc="clicking", unit="img", disable=not progress):
            pred.set_image(paths[name])
            texts: dict = {}
            recs = []
            for inst in by_file[name]:
                gt = rle_decode([inst.rle])[0].numpy()
                rec = {"key": inst.key, "phrase": inst.phrase, "area": int(gt.sum()),
                       "from_nothing": simulate_instance(pred, gt, max_clicks)}
                if from_text:
                    if inst.phrase not in texts:
                        texts[inst.phrase] = pred.predict(text=inst.phrase)
                    start, _ = start_from_text(texts[inst.phrase], gt)
                    rec["from_text"] = simulate_instance(
                        pred, gt, max_clicks, start if start is not None else np.zeros_like(gt))
                recs.append(rec)
            log.append({"image": name, "predictions": recs})
    finally:
        log.close()
    records = [r for f in by_file for r in log.records.get(f, [])]
    summary = {"num_instances": len(records), "max_clicks": max_clicks, "iou_targets": list(IOU_TARGETS),
               "convention": f"an instance never reaching IoU t counts as {max_clicks} clicks in NoC@t"}
    for m in modes:
        summary[m] = summarize_curves([r[m] for r in records], max_clicks)
    files = {"json": out / "interactive.json", "markdown": out / "interactive.md", "plot": out / "interactive_miou.png"}
    payload = {**summary, "instances": records}
    atomic_write(files["json"], lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    text = _markdown(summary, max_clicks, command)
    try:
        plot_click_curves({m: summary[m]["mIoU_at_clicks"] for m in modes if summary[m].get("num_instances")},
                          str(files["plot"]))
    except MissingDependencyError as e:
        text += f"\nnote: plot skipped: {e}\n"
        del files["plot"]
    atomic_write(files["markdown"], lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    summary["files"] = {k: str(v) for k, v in files.items()}
    return summary
