"""``conceptseg eval``: score predictions against SA-Co / COCO ground truth, or run a model on a
dataset first (streamed and resumable), then score it. Writes report.json, summary.md, plots."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

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


SYNTHETIC_TEST_SEED = 1_000_003  # far from the training seeds: new scenes


def _synthetic_test_set(spec: str, out: Path, image_size: int) -> Path:
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
        write_coco(path.parent, num, seed=SYNTHETIC_TEST_SEED, image_size=image_size, split="test")
    return path


def _write_json(path: Path, obj) -> None:
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _heldout_subsets(gt, preds, iou_type: str, threshold: float) -> dict:
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


def cmd_eval(args) -> int:
    from . import coco_ap, evaluate_predictions, load_ground_truth, load_predictions, write_report

    if getattr(args, "exemplars", False):
        from ..build import load
        from .exemplar import evaluate_exemplars

        spec = args.data or "synthetic:50"
        _, _, n = spec.partition(":")
        if not spec.startswith("synthetic") or (n and not n.isdigit()):
            raise InputError("--exemplars runs on the synthetic test split: --data synthetic[:N]")
        res = evaluate_exemplars(load(args.model or None), int(n or 50), args.out,
                                 threshold=args.threshold)
        for kind in ("exemplar", "text"):
            r = res[kind]
            print(f"{kind:8s} prompt: pmF1 {r['pmF1']:.4f} (IoU 0.5: {r['pmF1_50']:.4f}), recall of "
                  f"the other instances {r['other_instance_recall_50']:.3f}")
        print(f"{res['num_groups']} instance groups ({res['num_groups_with_others']} with more than "
              f"one instance); {Path(args.out) / 'exemplars.json'}")
        return 0
    if getattr(args, "video", False):
        from .video_cli import cmd_eval_video

        return cmd_eval_video(args)
    out = Path(args.out)
    gt_paths = args.gt
    if args.model is not None or args.data is not None:
        if not (args.model is not None and args.data):
            raise InputError("--model needs --data (an SA-Co style JSON); pass --model '' for "
                             "the shipped model")
        from ..build import load

        model = load(args.model or None)
        if args.data.startswith("synthetic"):
            args.data = str(_synthetic_test_set(args.data, out, model.config.vision.image_size))
        from .video_run import model_label

        pred_path = predict_dataset(model, args.data, args.images, out / "predictions.json",
                                    args.dump_threshold, model_name=model_label(args.model))
        gt_paths = gt_paths or [args.data]
    else:
        if not gt_paths or not args.pred:
            raise InputError("give --gt and --pred, or --model and --data")
        pred_path = Path(args.pred)
    for p in list(gt_paths) + [pred_path]:
        if not Path(p).is_file():
            raise InputError(f"file not found: {p}")
    gt = load_ground_truth(gt_paths if len(gt_paths) > 1 else gt_paths[0])
    preds = load_predictions(str(pred_path), gt)
    report = evaluate_predictions(gt, preds, iou_type=args.iou_type,
                                  score_threshold=args.threshold)
    paths = write_report(report, preds, gt, out)
    stats = {}
    if not args.no_coco:
        stats = coco_ap(gt_paths[0], str(pred_path), iou_type=args.iou_type)
        _write_json(out / "coco_ap.json", stats)
    print(f"cgF1 {report.cgF1:.2f}  pmF1 {report.pmF1:.4f}  IL_MCC {report.IL_MCC:.4f}  "
          f"({args.iou_type}, {report.counts.get('num_datapoints', '?')} datapoints)")
    subsets = _heldout_subsets(gt, preds, args.iou_type, args.threshold)
    if subsets:
        _write_json(out / "subsets.json", subsets)
        for name, r in subsets.items():
            print(f"  {name}: cgF1 {r['cgF1']:.2f}  pmF1 {r['pmF1']:.4f}  IL_MCC {r['IL_MCC']:.4f}  "
                  f"({r['num_evaluated']} datapoints, {r['num_positive']} positive)")
    if stats:
        print(f"COCO AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}")
    print(f"report: {paths['markdown']} (+ JSON and plots in {out}/)")
    return 0


def register(sub) -> None:
    e = sub.add_parser("eval", help="SA-Co metrics (cgF1, pmF1, IL_MCC), COCO AP, reports")
    e.add_argument("--gt", action="append", default=[],
                   help="ground-truth JSON; repeat for several annotators (SA-Co Gold a/b/c)")
    e.add_argument("--pred", help="COCO results JSON (or .jsonl) with RLE masks and scores")
    e.add_argument("--model", help="checkpoint to run first ('' = the shipped model)")
    e.add_argument("--data", help="SA-Co style JSON to run the model on (also the GT by default), "
                                  "or synthetic[:N] for a held-out synthetic test split")
    e.add_argument("--images", help="image folder (default: next to --data)")
    e.add_argument("--out", default="eval_out")
    e.add_argument("--iou-type", choices=["segm", "bbox"], default="segm")
    e.add_argument("--threshold", type=float, default=0.5, help="score threshold of SA-Co metrics")
    e.add_argument("--dump-threshold", type=float, default=0.05,
                   help="lowest score written to the predictions (for PR curves, calibration)")
    e.add_argument("--no-coco", action="store_true", help="skip COCO AP")
    e.add_argument("--exemplars", action="store_true",
                   help="measure exemplar prompting (one box on one instance finds the others) "
                        "on the synthetic test split (--data synthetic:N, --model)")
    e.add_argument("--video", action="store_true",
                   help="video metrics (pHOTA, DetA, AssA, IDSW, masklet cgF1): --gt is YTVIS / SA-Co "
                        "VEval JSON, --pred YTVIS results or `conceptseg track --json` file(s); "
                        "or --model (video checkpoint) and --data synthetic[:N] / annotations JSON")
    e.add_argument("--frames", type=int, default=None,
                   help="--video --data synthetic: frames per synthetic test video (default 12)")
    e.add_argument("--device", default="cpu", help="--video --model: device to run the model on")
    e.set_defaults(func=cmd_eval)
