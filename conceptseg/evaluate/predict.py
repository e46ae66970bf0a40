"""Run an image model over a dataset (SA-Co style JSON or the synthetic test split), streamed and
resumable; metrics on the held-out colour-shape pairs of synthetic test splits."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..data.foreign import write_foreign_coco
from ..data.phrases import parse_phrase
from ..data.splits import FOREIGN_TEST_SEED, TEST_SEED
from ..data.synthetic import write_coco
from ..errors import InputError
from ..inference.image import ImagePredictor
from ..runtime import progress as progress_bar
from .ground_truth import GroundTruth, restrict
from .inputs import load_json, synthetic_count
from .predictions import Predictions
from .saco import evaluate_cgf1
from .writer import PredictionWriter, file_hash

__all__ = ["DEFAULT_NUM_IMAGES", "predict_dataset", "datapoints_by_file", "image_paths", "synthetic_test_set",
           "heldout_subsets", "is_foreign", "foreign_count"]

DEFAULT_NUM_IMAGES = 200


def datapoints_by_file(gt_path: str | Path) -> dict[str, list[dict]]:
    """The ``images`` entries (datapoints) of an SA-Co style JSON, grouped by image file."""
    data = load_json(gt_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{gt_path}: expected an SA-Co / COCO style JSON with an 'images' list")
    by_file: dict[str, list[dict]] = defaultdict(list)
    for entry in data["images"]:
        if not isinstance(entry, dict) or "text_input" not in entry or "file_name" not in entry:
            raise InputError(f"{gt_path}: image entry {entry.get('id') if isinstance(entry, dict) else entry!r} "
                             "needs file_name and text_input")
        by_file[entry["file_name"]].append(entry)
    return by_file


def image_paths(gt_path: str | Path, file_names, images_dir: str | None = None) -> dict[str, Path]:
    """``file_name`` -> image file, looked up under ``images_dir`` (default: the folder of the
    JSON) as ``<root>/<file_name>``, ``<root>/images/<file_name>`` or, when the names carry a
    folder (``images/000001.png``), ``<root>/<bare name>``.  A missing image is an
    :class:`InputError` before any model work."""
    root = Path(images_dir) if images_dir else Path(gt_path).parent
    out = {}
    for name in file_names:
        tried = dict.fromkeys([root / name, root / "images" / name, root / Path(name).name])
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            hint = "" if images_dir else "; pass --images"
            raise InputError(f"image {name!r} of {gt_path} not found under {root}{hint}")
        out[name] = found
    return out


def predict_dataset(model, gt_path: str, images_dir: str | None, out_path: Path,
                    dump_threshold: float = 0.05, progress: bool = True,
                    model_name: str = "") -> Path:
    """Run ``model`` on every datapoint of an SA-Co-style JSON and stream COCO results to
    ``out_path``. Datapoints are grouped by image so each image is encoded once and its phrases
    run as one batch. Interrupted runs resume where they stopped (finished datapoints are
    kept in ``out_path.partial.jsonl``)."""
    by_file = datapoints_by_file(gt_path)
    paths = image_paths(gt_path, by_file, images_dir)
    writer = PredictionWriter(out_path, resume=True, key={
        "gt": file_hash(gt_path), "model": model_name, "threshold": dump_threshold})
    pred = ImagePredictor(model)
    todo = {f: [e for e in es if e["id"] not in writer] for f, es in by_file.items()}
    todo = {f: es for f, es in todo.items() if es}
    if len(todo) < len(by_file):
        print(f"resuming: {len(by_file) - len(todo)} of {len(by_file)} images already done")
    with writer:
        for file_name, entries in progress_bar(todo.items(), desc="predicting", unit="img",
                                               disable=not progress):
            pred.set_image(paths[file_name])
            results = pred.predict(text=[e["text_input"] for e in entries], threshold=dump_threshold)
            for e, r in zip(entries, results):
                writer.write(e["id"], r.to_coco(image_id=e["id"]))
        writer.finalize()
    return out_path


def synthetic_test_set(spec: str, out: Path, image_size: int) -> Path:
    """'synthetic' or 'synthetic:N': a held-out test split of the concept data engine (new seeds,
    scenes that contain the colour-shape pairs held out of training), written once under out/;
    'foreign' or 'foreign:N': the second renderer's scenes (data/foreign, never trained on)."""
    if is_foreign(spec):  # the second renderer (never trained on); it draws its own image sizes
        num = foreign_count(spec)
        path = out / f"foreign_test_{num}" / "annotations.json"
        return path if path.exists() else write_foreign_coco(path.parent, num, FOREIGN_TEST_SEED)
    num = synthetic_count(spec, DEFAULT_NUM_IMAGES)
    path = out / f"synthetic_test_{num}" / "annotations.json"
    if not path.exists():
        write_coco(path.parent, num, seed=TEST_SEED, image_size=image_size, split="test")
    return path


def is_foreign(spec: str) -> bool:
    """``--data foreign`` or ``foreign:N``: the second renderer's held-out scenes."""
    return spec == "foreign" or spec.startswith("foreign:")


def foreign_count(spec: str) -> int:
    """N of ``--data foreign`` / ``foreign:N`` (default 200); N < 1 is refused."""
    n = spec.partition(":")[2]
    if not is_foreign(spec) or (n and not n.isdigit()) or (n and int(n) < 1):
        raise InputError(f"--data {spec!r}: expected foreign or foreign:N with N >= 1")
    return int(n) if n else DEFAULT_NUM_IMAGES


def heldout_subsets(gt: GroundTruth, preds: Predictions, iou_type: str, threshold: float) -> dict:
    """Synthetic test splits (their ``info`` lists ``held_out_pairs``): metrics on the phrases
    that name a held-out colour-shape pair (compositional generalisation) and on the others."""
    info = gt.coco[0].get("info", {}) if gt.coco and isinstance(gt.coco[0], dict) else {}
    pairs = {tuple(p) for p in info.get("held_out_pairs") or []}
    if not pairs:
        return {}

    def names_pair(dp) -> bool:
        try:
            q = parse_phrase(dp.text)
        except ValueError:
            return False
        return (q.get("color"), q.get("shape")) in pairs

    out = {}
    for name, keep in (("held-out pairs", names_pair), ("other phrases", lambda d: not names_pair(d))):
        sub = restrict(gt, keep)
        if not sub.eval_ids:
            continue
        r = evaluate_cgf1(sub, preds, iou_type, threshold)
        out[name] = {"cgF1": r.cgF1, "pmF1": r.pmF1, "IL_MCC": r.IL_MCC,
                     "num_evaluated": len(sub.eval_ids), "num_positive": r.counts["num_positive"]}
    return out
