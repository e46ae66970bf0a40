"""``conceptseg eval``: score predictions against SA-Co / COCO ground truth, or run a model on a
dataset first (streamed and resumable), then score it. Writes report.json, summary.md, plots."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..evaluate.predict import heldout_subsets, predict_dataset, synthetic_test_set


def _write_json(path: Path, obj) -> None:
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def cmd_eval(args) -> int:
    from ..evaluate import coco_ap, evaluate_predictions, load_ground_truth, load_predictions, write_report

    if getattr(args, "exemplars", False):
        from ..build import load
        from ..evaluate.exemplar import evaluate_exemplars

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
        from .eval_video import cmd_eval_video

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
            args.data = str(synthetic_test_set(args.data, out, model.config.vision.image_size))
        from ..evaluate.video_run import model_label

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
    subsets = heldout_subsets(gt, preds, args.iou_type, args.threshold)
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
