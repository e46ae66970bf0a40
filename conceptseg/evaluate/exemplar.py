"""Exemplar prompting on the synthetic test split: one positive box on one instance, find the
others of the same kind.

For every group of instances of a held-out test scene that share all four attributes (size,
fill, colour, shape), the largest one is boxed and given as the only prompt (text "visual",
the official placeholder). Ground truth is the whole group, the boxed instance included, so the
SA-Co positive micro F1 (pmF1, IoU 0.5:0.95) applies unchanged; we also report the recall of the
*other* instances (IoU >= 0.5), which is what a labeller wants from the box. For comparison the
same groups are prompted with their full description as text ("large striped red star").

``conceptseg eval --exemplars --model M --data synthetic:N`` runs it. With ``--cross-image``,
:func:`evaluate_exemplar_curve` draws the exemplar curve instead: recall against 1, 2 and 3
exemplars boxed on the same image or on other scenes (a :class:`~conceptseg.Concept` carried
over), next to text prompting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..data.phrases import format_phrase
from ..data.splits import EXEMPLAR_TEST_SEED
from ..data.synthetic import SceneConfig, derive_seed, make_scene, mask_to_rle
from ..errors import MissingDependencyError
from ..inference.concept import Concept
from ..inference.image import ImagePredictor
from ..inference.results import Prediction
from ..ops.masks import rle_iou
from ..runtime import progress as progress_bar
from .ground_truth import load_ground_truth
from .plots import _figure, _save
from .predictions import load_predictions
from .saco import evaluate_cgf1

__all__ = ["exemplar_groups", "evaluate_exemplars", "evaluate_exemplar_curve", "curve_table"]


def exemplar_groups(scene) -> list[tuple[list[int], int]]:
    """[(instance indices of one kind, index of the boxed one = the largest visible)]."""
    groups: dict[tuple, list[int]] = {}
    for i, inst in enumerate(scene.instances):
        groups.setdefault(tuple(sorted(inst.attributes.items())), []).append(i)
    return [(ids, max(ids, key=lambda k: scene.instances[k].area)) for ids in groups.values()]


def _gt_json(scenes, groups_per_scene) -> dict:
    images, anns = [], []
    for s, (scene, groups) in enumerate(zip(scenes, groups_per_scene)):
        H, W = scene.image.shape[:2]
        for ids, boxed in groups:
            dp = len(images) + 1
            x0, y0, x1, y1 = scene.instances[boxed].box
            images.append({"id": dp, "height": H, "width": W, "scene": s, "text_input":
                           format_phrase(scene.instances[boxed].attributes),
                           "exemplar_xyxy": [x0, y0, x1, y1], "boxed_instance": boxed,
                           "instance_ids": ids, "is_instance_exhaustive": 1})
            for k in ids:
                inst = scene.instances[k]
                bx0, by0, bx1, by1 = inst.box
                anns.append({"id": len(anns) + 1, "image_id": dp, "segmentation": mask_to_rle(inst.mask),
                             "bbox": [bx0, by0, bx1 - bx0, by1 - by0], "area": int(inst.area),
                             "iscrowd": 0, "category_id": 1, "instance_index": k})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def _match_rles(rles: list[dict], gt_rles: list[dict]) -> int:
    """Ground-truth geometries matched one-to-one at IoU >= 0.5 by ``rles`` taken in order
    (each takes its best unmatched ground truth)."""
    used: set[int] = set()
    for row in rle_iou(rles, gt_rles):
        free = [v if k not in used else -1.0 for k, v in enumerate(row)]
        j = int(np.argmax(free)) if free else 0
        if free and free[j] >= 0.5:
            used.add(j)
    return len(used)


def _kept(pred: Prediction, threshold: float) -> list[dict]:
    """RLEs of the predictions scoring above ``threshold``, best first."""
    return [p["segmentation"] for p in pred.to_coco(0) if p["score"] > threshold]


def _other_recall(gt_json: dict, preds: list[dict], threshold: float) -> float:
    """Share of the non-boxed instances matched (IoU >= 0.5, one-to-one greedy by score) by a
    prediction scoring above ``threshold``."""
    by_dp: dict[int, list[dict]] = {}
    for p in preds:
        if p["score"] > threshold:
            by_dp.setdefault(p["image_id"], []).append(p)
    hit = total = 0
    boxed = {im["id"]: im["boxed_instance"] for im in gt_json["images"]}
    gts: dict[int, list[dict]] = {}
    for a in gt_json["annotations"]:
        gts.setdefault(a["image_id"], []).append(a)
    for dp, anns in gts.items():
        others = [a for a in anns if a["instance_index"] != boxed[dp]]
        if not others:
            continue
        total += len(others)
        ps = sorted(by_dp.get(dp, []), key=lambda p: -p["score"])
        hit += _match_rles([p["segmentation"] for p in ps], [a["segmentation"] for a in others])
    return hit / max(total, 1)


def _test_scenes(model, num_images: int, seed: int | None):
    """(seed, the held-out scenes at the model's input size, their exemplar groups)."""
    seed = EXEMPLAR_TEST_SEED if seed is None else seed
    size = model.config.vision.image_size
    scenes = [make_scene(derive_seed(seed, i), size, SceneConfig(split="test"))
              for i in range(num_images)]
    return seed, scenes, [exemplar_groups(s) for s in scenes]


def evaluate_exemplars(model, num_images: int, out_dir: str | Path, seed: int | None = None,
                       threshold: float = 0.5, progress: bool = True, dump_threshold: float = 0.05) -> dict:
    """Run both prompt kinds on ``num_images`` test scenes; write ``exemplars.json`` in out_dir
    and return {"exemplar": {...}, "text": {...}} with pmF1, other-instance recall, counts.
    Predictions scoring above ``dump_threshold`` (at most ``threshold``) are kept."""
    seed, scenes, groups = _test_scenes(model, num_images, seed)
    gt_json = _gt_json(scenes, groups)
    pred = ImagePredictor(model)
    preds = {"exemplar": [], "text": []}
    by_scene: dict[int, list[dict]] = {}
    for im in gt_json["images"]:
        by_scene.setdefault(im["scene"], []).append(im)
    for s, entries in progress_bar(by_scene.items(), desc="exemplar prompts", unit="img",
                                  disable=not progress):
        pred.set_image(scenes[s].image)
        for e in entries:
            r = pred.predict(exemplars=[(e["exemplar_xyxy"], True)], threshold=dump_threshold)
            preds["exemplar"] += r.to_coco(image_id=e["id"])
        for e, r in zip(entries, pred.predict(text=[e["text_input"] for e in entries],
                                                   threshold=dump_threshold)):
            preds["text"] += r.to_coco(image_id=e["id"])
    gt = load_ground_truth(gt_json)
    out: dict = {"num_groups": len(gt_json["images"]),
                 "num_groups_with_others": sum(len(e["instance_ids"]) > 1 for e in gt_json["images"]),
                 "num_images": num_images}
    for kind, ps in preds.items():
        rep = evaluate_cgf1(gt, load_predictions(ps, gt), "segm", threshold)
        out[kind] = {"pmF1": rep.pmF1, "pmF1_50": rep.pmF1_50,
                     "other_instance_recall_50": _other_recall(gt_json, ps, threshold),
                     "num_predictions_kept": rep.counts["num_predictions_kept"]}
    atomic_write(Path(out_dir) / "exemplars.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1)))
    return out


# -- the exemplar curve: 1, 2, 3 exemplars, from the same image and from other images ----------

MAX_EXEMPLARS = 3  # the curve's last point (Concept.merge pools at most 3 reference images)


def _kind(inst) -> tuple:
    return tuple(sorted(inst.attributes.items()))


def _references(scenes, groups) -> dict[tuple, list[tuple[int, int]]]:
    """kind -> [(scene, boxed instance)] for every scene holding that kind, in scene order."""
    refs: dict[tuple, list[tuple[int, int]]] = {}
    for s, gs in enumerate(groups):
        for _, boxed in gs:
            refs.setdefault(_kind(scenes[s].instances[boxed]), []).append((s, boxed))
    return refs


def evaluate_exemplar_curve(model, num_images: int, out_dir: str | Path, seed: int | None = None,
                            threshold: float = 0.5, progress: bool = True) -> dict:
    """Recall of a kind's instances (IoU >= 0.5, score above ``threshold``) against k = 1, 2, 3
    exemplars, on ``num_images`` held-out scenes; writes exemplar_curve.json / .md (and .png
    with matplotlib) in out_dir.

    same image: the k largest instances of a group are boxed; recall of its other instances.
    other images: the boxed (largest) instance of the kind in each of k other scenes, each
    encoded as a :class:`Concept` on its own scene and merged; recall of all the group's
    instances. The other scenes are taken in scene order starting after the target's. Each
    is paired with the group's full phrase as text, scored on the same instances.
    """
    seed, scenes, groups = _test_scenes(model, num_images, seed)
    refs = _references(scenes, groups)
    pred = ImagePredictor(model)
    single: dict[tuple[int, int], Concept] = {}  # (scene, instance) -> its one-box concept
    for s in progress_bar(range(num_images), desc="reference boxes", unit="img", disable=not progress):
        pred.set_image(scenes[s].image)
        for _, boxed in groups[s]:
            single[s, boxed] = pred.encode_concept(exemplars=[(scenes[s].instances[boxed].box, True)])
    # tallies[setting][k][prompt] = [found, instances, kept predictions, kept on the kind]
    tallies = {m: {k: {"exemplars": [0, 0, 0, 0], "text": [0, 0, 0, 0]}
                   for k in range(1, MAX_EXEMPLARS + 1)} for m in ("same_image", "other_images")}
    for t in progress_bar(range(num_images), desc="exemplar curve", unit="img", disable=not progress):
        scene = scenes[t]
        pred.set_image(scene.image)
        rows: list[tuple[str, int, list[int], Concept | None]] = []  # (setting, k, instances, concept)
        for ids, _ in groups[t]:
            by_size = sorted(ids, key=lambda i: -scene.instances[i].area)
            others = [r for r in refs[_kind(scene.instances[ids[0]])] if r[0] != t]
            others = sorted(others, key=lambda r: (r[0] - t) % num_images)
            for k in range(1, MAX_EXEMPLARS + 1):
                if len(ids) > k:
                    boxes = [(scene.instances[i].box, True) for i in by_size[:k]]
                    rows.append(("same_image", k, by_size[k:], pred.encode_concept(exemplars=boxes)))
                if len(others) >= k:
                    rows.append(("other_images", k, ids, Concept.merge([single[r] for r in others[:k]])))
        if not rows:
            continue
        phrases = [format_phrase(scene.instances[ids[0]].attributes) for _, _, ids, _ in rows]
        results = pred.predict(text=phrases, concept=[c for *_, c in rows], threshold=threshold)
        kind_rles = {_kind(scene.instances[ids[0]]): [mask_to_rle(scene.instances[i].mask) for i in ids]
                     for ids, _ in groups[t]}
        for (setting, k, ids, _), r_text, r_ex in zip(rows, results[:len(rows)], results[len(rows):]):
            gt = [mask_to_rle(scene.instances[i].mask) for i in ids]
            for name, r in (("exemplars", r_ex), ("text", r_text)):
                kept = _kept(r, threshold)
                cell = tallies[setting][k][name]
                cell[0] += _match_rles(kept, gt)
                cell[1] += len(gt)
                cell[2] += len(kept)  # precision: kept predictions on any instance of the kind
                cell[3] += _match_rles(kept, kind_rles[_kind(scene.instances[ids[0]])])
    out = {"num_images": num_images, "seed": seed, "threshold": threshold, "iou": 0.5,
           "curve": {m: {str(k): {name: {"recall": c[0] / c[1] if c[1] else None,
                                         "found": c[0], "instances": c[1],
                                         "precision": c[3] / c[2] if c[2] else None,
                                         "kept": c[2]}
                                  for name, c in cells.items()}
                         for k, cells in per_k.items()}
                     for m, per_k in tallies.items()}}
    out_dir = Path(out_dir)
    atomic_write(out_dir / "exemplar_curve.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1)))
    table = curve_table(out)
    atomic_write(out_dir / "exemplar_curve.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    try:
        out["plot"] = plot_exemplar_curve(out, str(out_dir / "exemplar_curve.png"))
    except MissingDependencyError as e:  # matplotlib is optional: the table is the result
        out["plot"] = None
        out["plot_note"] = str(e)
    return out


def _cell(c: dict) -> str:
    if c["recall"] is None:
        return "—"
    precision = "—" if c["precision"] is None else f"{100 * c['precision']:.0f} %"
    return f"{100 * c['recall']:.1f} % ({c['found']}/{c['instances']}), P {precision}"


def curve_table(res: dict) -> str:
    """The curve as a Markdown table (one row per number of exemplars): recall (found /
    instances) and P, the precision of the kept predictions against every instance of the kind
    on the image (the boxed ones included)."""
    lines = ["| exemplars | same image (the other instances) | text, same instances "
             "| other images (all instances) | text, same instances |",
             "|---|---|---|---|---|"]
    for k, same in res["curve"]["same_image"].items():
        other = res["curve"]["other_images"][k]
        lines.append(f"| {k} | {_cell(same['exemplars'])} | {_cell(same['text'])} "
                     f"| {_cell(other['exemplars'])} | {_cell(other['text'])} |")
    return "\n".join(lines)


def plot_exemplar_curve(res: dict, path: str) -> str:
    """Recall against the number of exemplars, same image and other images, text dashed."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for setting, colour in (("same_image", "tab:blue"), ("other_images", "tab:orange")):
        ks = [int(k) for k, c in res["curve"][setting].items() if c["exemplars"]["recall"] is not None]
        label = setting.replace("_", " ")
        ax.plot(ks, [100 * res["curve"][setting][str(k)]["exemplars"]["recall"] for k in ks],
                "o-", color=colour, label=f"exemplars, {label}")
        ax.plot(ks, [100 * res["curve"][setting][str(k)]["text"]["recall"] for k in ks],
                "s--", color=colour, alpha=0.6, label=f"text (same instances as {label})")
    ax.set_xticks(range(1, MAX_EXEMPLARS + 1))
    ax.set_xlabel("exemplar boxes")
    ax.set_ylabel("recall at IoU 0.5 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"exemplar curve ({res['num_images']} held-out scenes)")
    return _save(fig, path)
