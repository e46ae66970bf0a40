"""Run an image model over a dataset (SA-Co style JSON or the synthetic test split), streamed and
resumable; metrics on the held-out colour-shape pairs of synthetic test splits."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..data.splits import TEST_SEED
from ..errors import InputError


def predict_dataset(model, gt_path: str, images_dir: str | None, out_path: Path,
                    dump_threshold: float = 0.05, progress: bool = True,
                    model_name: str = "") -> Path:
    """Run ``model`` on every datapoint of an SA-Co-style JSON and stream COCO results to
    ``out_path``. Datapoints are grouped by image so each image is encoded once and its phrases
    run as one batch. Interrupted runs resume where they stopped (finished datapoints are
    kept in ``out_path.partial.jsonl``)."""
    from tqdm import tqdm

    from ..inference.image import ImagePredictor
    from .io import PredictionWriter

    data = json.loads(Path(gt_path).read_text())
    root = Path(images_dir) if images_dir else Path(gt_path).parent
    by_file: dict[str, list[dict]] = defaultdict(list)
    for entry in data.get("images", []):
        if "text_input" not in entry or "file_name" not in entry:
            raise InputError(f"{gt_path}: image entry {entry.get('id')} needs file_name and text_input")
        by_file[entry["file_name"]].append(entry)
    from .writer import file_hash

    writer = PredictionWriter(out_path, resume=True, key={
        "gt": file_hash(gt_path), "model": model_name, "threshold": dump_threshold})
    pred = ImagePredictor(model)
    todo = {f: [e for e in es if e["id"] not in writer] for f, es in by_file.items()}
    todo = {f: es for f, es in todo.items() if es}
    if len(todo) < len(by_file):
        print(f"resuming: {len(by_file) - len(todo)} of {len(by_file)} images already done")
    with writer:
        for file_name, entries in tqdm(todo.items(), desc="predicting", unit="img",
                                       disable=not progress):
            path = root / file_name
            if not path.exists():
                path = root / "images" / file_name
            pred.set_image(path)
            results = pred.predict(text=[e["text_input"] for e in entries], threshold=dump_threshold)
            for e, r in zip(entries, results):
                writer.write(e["id"], r.to_coco(image_id=e["id"]))
        writer.finalize()
    return out_path


def synthetic_test_set(spec: str, out: Path, image_size: int) -> Path:
    """'synthetic' or 'synthetic:N': a held-out test split of the concept data engine (new seeds,
    scenes that contain the colour-shape pairs held out of training), written once under out/."""
    from ..data.synthetic import write_coco

    _, _, n = spec.partition(":")
    try:
        num = int(n) if n else 200
    except ValueError:
        raise InputError(f"--data {spec!r}: expected synthetic or synthetic:N") from None
    path = out / f"synthetic_test_{num}" / "annotations.json"
    if not path.exists():
        write_coco(path.parent, num, seed=TEST_SEED, image_size=image_size, split="test")
    return path


def heldout_subsets(gt, preds, iou_type: str, threshold: float) -> dict:
    """Synthetic test splits (their ``info`` lists ``held_out_pairs``): metrics on the phrases
    that name a held-out colour-shape pair (compositional generalisation) and on the others."""
    from ..data.phrases import parse_phrase
    from .io import restrict
    from .saco import evaluate_cgf1

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
