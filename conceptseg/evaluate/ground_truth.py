"""SA-Co image ground truth: loading and validating one COCO JSON per annotator.

SA-Co image benchmarks (Gold / Silver) are COCO JSON files in which one ``images`` entry
is one *datapoint*: an (image, noun phrase) pair, the phrase stored in ``text_input``.
A datapoint without annotations is a *negative*.  SA-Co/Gold ships three independent
annotations per subset as separate files (``gold_<subset>_merged_{a,b,c}_release_test.json``);
pass them as a list to get the official "best annotator per datapoint" (oracle) scoring.

Everything that is wrong with an input raises :class:`EvalInputError` naming the
offending entry (its index in the list and its id), instead of an assertion deep
inside pycocotools.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, Union

from ..errors import EvalInputError
from .inputs import PathLike, is_int, is_number, load_json
from .segmentation import parse_geometry

__all__ = ["Datapoint", "GroundTruth", "SACO_GOLD_SUBSETS", "saco_gold_paths", "load_ground_truth",
           "restrict"]

GTSource = Union[PathLike, Mapping[str, Any]]

#: The seven SA-Co/Gold subsets, as named in the official release file names.
SACO_GOLD_SUBSETS = (
    "metaclip",
    "sa1b",
    "crowded",
    "fg_food",
    "fg_sports_equipment",
    "attributes",
    "wiki_common",
)


@dataclass(frozen=True)
class Datapoint:
    """One (image, noun phrase) pair of an SA-Co split."""

    id: int
    text: str
    height: int
    width: int
    file_name: str | None = None
    is_instance_exhaustive: bool = True


@dataclass
class GroundTruth:
    """Validated ground truth, possibly with several annotators (SA-Co/Gold).

    ``instances[k][image_id]`` lists annotator ``k``'s annotations for a datapoint, each a
    dict with ``id``, ``segmentation`` (compressed RLE, str counts), ``bbox`` (xywh),
    ``iscrowd`` and ``area`` (as given in the file, or None).  ``eval_ids`` are the datapoints scored by cgF1 (instance-exhaustive ones).
    """

    datapoints: dict[int, Datapoint]
    instances: list[dict[int, list[dict]]]
    eval_ids: list[int]
    coco: list[dict] = field(repr=False, default_factory=list)
    sources: list[str] = field(default_factory=list)
    rescaled_boxes: list[bool] = field(default_factory=list)  # per file: boxes were normalised

    @property
    def num_annotators(self) -> int:
        return len(self.instances)


def saco_gold_paths(folder: PathLike, subset: str) -> list[str]:
    """The three per-annotator GT files of an SA-Co/Gold subset inside ``folder``."""
    if subset not in SACO_GOLD_SUBSETS:
        raise ValueError(f"unknown SA-Co/Gold subset {subset!r}; expected one of {SACO_GOLD_SUBSETS}")
    return [os.path.join(os.fspath(folder), f"gold_{subset}_merged_{a}_release_test.json") for a in "abc"]


def _parse_gt_file(data: Any, source: str) -> tuple[dict[int, Datapoint], dict[int, list[dict]], dict]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EvalInputError(f"{source}: ground truth must be a COCO dict with an 'images' list")
    datapoints: dict[int, Datapoint] = {}
    for i, img in enumerate(data["images"]):
        iid = img.get("id") if isinstance(img, dict) else None
        where = f"{source}: image {i} (id={iid!r})"
        if not isinstance(img, dict) or not is_int(iid):
            raise EvalInputError(f"{where}: missing or non-integer 'id'", i, iid)
        if iid in datapoints:
            raise EvalInputError(f"{where}: duplicate image id", i, iid)
        h, w = img.get("height"), img.get("width")
        if not (is_int(h) and is_int(w) and h > 0 and w > 0):
            raise EvalInputError(f"{where}: 'height'/'width' must be positive ints, got {h!r}/{w!r}", i, iid)
        text = img.get("text_input", "")
        if not isinstance(text, str):
            raise EvalInputError(f"{where}: 'text_input' must be a string", i, iid)
        # Official CGF1Evaluator reads img["is_instance_exhaustive"] (KeyError if absent);
        # plain COCO files have no such key, so we default to exhaustive.
        exh = bool(img.get("is_instance_exhaustive", True))
        datapoints[iid] = Datapoint(iid, text, h, w, img.get("file_name"), exh)

    instances: dict[int, list[dict]] = {iid: [] for iid in datapoints}
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise EvalInputError(f"{source}: 'annotations' must be a list")
    for i, ann in enumerate(anns):
        aid = ann.get("id") if isinstance(ann, dict) else None
        where = f"{source}: annotation {i} (id={aid!r})"
        if not isinstance(ann, dict):
            raise EvalInputError(f"{where}: not an object", i, aid)
        iid = ann.get("image_id")
        if iid not in datapoints:
            raise EvalInputError(f"{where}: unknown image_id {iid!r}", i, aid)
        dp = datapoints[iid]
        try:
            rle, box = parse_geometry(ann.get("segmentation"), ann.get("bbox"), dp.height, dp.width,
                                      polygons=True)
        except EvalInputError as e:
            raise EvalInputError(f"{where}: {e}", i, aid) from e
        instances[iid].append({"id": aid, "segmentation": rle, "bbox": box, "iscrowd": bool(ann.get("iscrowd", 0)),
                               "area": float(ann["area"]) if is_number(ann.get("area")) else None})
    return datapoints, instances, data


def _boxes_look_normalized(datapoints: dict[int, Datapoint], instances: dict[int, list[dict]]) -> bool:
    boxes = [g["bbox"] for inst in instances.values() for g in inst if g["bbox"] is not None]
    if not boxes or min(min(d.height, d.width) for d in datapoints.values()) <= 2:
        return False
    return max(max(b[0] + b[2], b[1] + b[3]) for b in boxes) <= 1.0 + 1e-6


def _rescale_boxes(datapoints: dict[int, Datapoint], instances: dict[int, list[dict]]) -> None:
    for iid, inst in instances.items():
        d = datapoints[iid]
        for g in inst:
            if g["bbox"] is not None:
                x, y, w, h = g["bbox"]
                g["bbox"] = (x * d.width, y * d.height, w * d.width, h * d.height)


def load_ground_truth(
    gt_json_or_paths: GTSource | Sequence[GTSource], exhaustive_only: bool = True, normalized_boxes: bool | None = None
) -> GroundTruth:
    """Load one GT (path or COCO dict) or a list of them (one per annotator).

    The datapoints come from the first file.  As in the official ``CGF1Evaluator``, only
    datapoints with ``is_instance_exhaustive`` in the first file *and* not marked
    non-exhaustive in any other file are scored (``exhaustive_only=False`` scores all).
    All annotator files must describe the same datapoints.

    ``normalized_boxes``: the SA-Co README documents GT ``bbox`` as normalised by the image
    size, while predictions (and the official evaluator, which uses GT boxes as they are)
    are in pixels.  None (default) detects a file whose boxes all lie in [0, 1] and rescales
    them to pixels with a warning; True / False force it.  Only box IoU / box AP use it.
    """
    if isinstance(gt_json_or_paths, (str, os.PathLike, Mapping)):
        sources_in: list[GTSource] = [gt_json_or_paths]
    else:
        sources_in = list(gt_json_or_paths)
    if not sources_in:
        raise EvalInputError("no ground truth given")
    datapoints: dict[int, Datapoint] = {}
    per_annot: list[dict[int, list[dict]]] = []
    raws, names, rescaled = [], [], []
    excluded: set[int] = set()
    for k, src in enumerate(sources_in):
        name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else f"gt[{k}]"
        data = load_json(src) if isinstance(src, (str, os.PathLike)) else src
        dps, inst, raw = _parse_gt_file(data, name)
        if k == 0:
            datapoints = dps
        else:
            if dps.keys() != datapoints.keys():
                missing = sorted(datapoints.keys() - dps.keys())[:3]
                extra = sorted(dps.keys() - datapoints.keys())[:3]
                raise EvalInputError(
                    f"{name}: annotator files must list the same datapoints as {names[0]} "
                    f"(missing e.g. {missing}, extra e.g. {extra})"
                )
            excluded |= {i for i, d in dps.items() if not d.is_instance_exhaustive}
        norm = _boxes_look_normalized(dps, inst) if normalized_boxes is None else normalized_boxes
        if norm:
            if normalized_boxes is None:
                warnings.warn(f"{name}: all GT boxes lie in [0, 1]; treating them as normalised and "
                              "rescaling to pixels (pass normalized_boxes=False to keep them)", stacklevel=2)
            _rescale_boxes(dps, inst)
        per_annot.append(inst)
        raws.append(raw)
        names.append(name)
        rescaled.append(bool(norm))
    eval_ids = [
        i for i, d in datapoints.items() if not exhaustive_only or (d.is_instance_exhaustive and i not in excluded)
    ]
    return GroundTruth(datapoints, per_annot, eval_ids, raws, names, rescaled)


def restrict(gt: GroundTruth, keep: Callable[[Datapoint], bool]) -> GroundTruth:
    """The same ground truth scoring only the datapoints for which ``keep`` is true (e.g. the
    phrases that name a held-out colour-shape pair of the synthetic test split)."""
    ids = [i for i in gt.eval_ids if keep(gt.datapoints[i])]
    return replace(gt, eval_ids=ids)
