"""``conceptseg eval``: score predictions against SA-Co / COCO ground truth, or run a model on a
dataset first (streamed and resumable), then score it. Writes report.json, summary.md, plots."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from .. import build  # build.load is looked up on use (tests stand in a model)
from ..atomic import atomic_write
from ..errors import InputError
from ..evaluate import coco_ap, evaluate_cgf1, load_ground_truth, load_predictions, restrict, write_report
from ..evaluate.exemplar import curve_table, evaluate_exemplar_curve, evaluate_exemplars
from ..evaluate.inputs import load_json, synthetic_count
from ..evaluate.interactive_run import interactive_instances, run_interactive
from ..evaluate.predict import (datapoints_by_file, foreign_count, heldout_subsets, image_paths,
                                is_foreign, predict_dataset, synthetic_test_set)
from ..evaluate.strata import training_frequencies
from ..evaluate.writer import model_label
from ..runtime import check_output_path, resolve_device
from .eval_video import cmd_eval_video, is_synthetic

DEFAULT_EXEMPLAR_IMAGES = 50
DEFAULT_INTERACTIVE_IMAGES = 10


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _check_unit(flag: str, value: float) -> None:
    if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"{flag} must be within [0, 1], got {value}")


def _check_options(args) -> None:
    """Everything cheap, before any work: thresholds, --out, the device."""
    _check_unit("--threshold", args.threshold)
    _check_unit("--dump-threshold", args.dump_threshold)
    if args.cross_image and not args.exemplars:
        raise InputError("--cross-image draws the exemplar curve: add --exemplars")
    runs_model = args.model is not None and not args.video
    if runs_model and args.dump_threshold > args.threshold:
        raise InputError(f"--dump-threshold {args.dump_threshold:g} is above --threshold {args.threshold:g}: "
                         "predictions scoring between the two would never be written and count as "
                         "missed; lower --dump-threshold")
    if args.only_predicted and args.model is not None:
        raise InputError("--only-predicted is for --pred files; a model run predicts every datapoint")
    check_output_path(args.out, "--out", directory=True)
    if args.model is not None:
        args.device = resolve_device(args.device)


def _cmd_exemplars(args) -> int:
    spec = args.data or f"synthetic:{DEFAULT_EXEMPLAR_IMAGES}"
    if not is_synthetic(spec):
        raise InputError("--exemplars runs on the synthetic test split: --data synthetic[:N]")
    num = synthetic_count(spec, DEFAULT_EXEMPLAR_IMAGES)
    if args.cross_image:
        return _cmd_exemplar_curve(args, num)
    res = evaluate_exemplars(build.load(args.model or None, device=args.device), num, args.out,
                             threshold=args.threshold, dump_threshold=args.dump_threshold)
    for kind in ("exemplar", "text"):
        r = res[kind]
        print(f"{kind:8s} prompt: pmF1 {r['pmF1']:.4f} (IoU 0.5: {r['pmF1_50']:.4f}), recall of "
              f"the other instances {r['other_instance_recall_50']:.3f}")
    print(f"{res['num_groups']} instance groups ({res['num_groups_with_others']} with more than "
          f"one instance); {Path(args.out) / 'exemplars.json'}")
    return 0


def _cmd_interactive(args) -> int:
    """--interactive: the click simulator on every instance of --data (synthetic[:N] or a
    COCO / SA-Co JSON), from nothing and (--from-text) from the text prompt's mask."""
    if args.model is None or not args.data:
        raise InputError("--interactive needs --model (a checkpoint with a tracker; '' = the shipped "
                         "model) and --data (synthetic[:N] or a COCO / SA-Co JSON)")
    if not 1 <= args.max_clicks <= 100:
        raise InputError(f"--max-clicks must be within 1..100, got {args.max_clicks}")
    out = Path(args.out)
    if is_synthetic(args.data):
        num = synthetic_count(args.data, DEFAULT_INTERACTIVE_IMAGES)
    else:
        if not Path(args.data).is_file():
            raise InputError(f"--data {args.data}: file not found (a COCO / SA-Co JSON, or synthetic:N)")
        image_paths(args.data, interactive_instances(args.data), args.images)
    model = build.load_video_model(args.model or None, device=args.device)
    data = args.data
    if is_synthetic(data):
        data = str(synthetic_test_set(f"synthetic:{num}", out, model.detector.config.vision.image_size))
    command = (f"conceptseg eval --interactive --model {shlex.quote(args.model)} --data "
               f"{shlex.quote(args.data)} --max-clicks {args.max_clicks}"
               + (" --from-text" if args.from_text else ""))
    s = run_interactive(model, data, args.images, out, args.max_clicks, args.from_text,
                        model_name=model_label(args.model), command=command)
    for m in ("from_nothing", "from_text"):
        r = s.get(m)
        if r and r.get("num_instances"):
            at = r["mIoU_at_clicks"]
            print(f"{m.replace('_', ' '):12s}: NoC@85 {r['NoC@85']:.2f}  NoC@90 {r['NoC@90']:.2f}  "
                  f"never 90 {100 * r['never_90']:.1f}%  mIoU@1 {at[1]:.3f}  mIoU@5 {at[min(5, len(at) - 1)]:.3f}")
    print(f"{s['num_instances']} instances, up to {args.max_clicks} clicks; report: {s['files']['markdown']}")
    return 0


def _cmd_exemplar_curve(args, num: int) -> int:
    res = evaluate_exemplar_curve(build.load(args.model or None, device=args.device), num, args.out,
                                  threshold=args.threshold)
    print(f"recall of the boxed kind's instances at IoU 0.5 (score > {args.threshold:g}), "
          f"{num} held-out scenes:")
    print(curve_table(res))
    out = Path(args.out)
    print(f"{out / 'exemplar_curve.json'}, {out / 'exemplar_curve.md'}"
          + (f", {res['plot']}" if res["plot"] else f" (no plot: {res.get('plot_note')})"))
    return 0


def _run_model(args, out: Path) -> Path:
    """--model + --data: check the data (and its images) first, then load and predict
    (resumable); returns the predictions file."""
    if not args.data:
        raise InputError("--model needs --data (an SA-Co style JSON); pass --model '' for "
                         "the shipped model")
    if is_foreign(args.data):
        foreign_count(args.data)  # the second renderer's split: refuses foreign:0 before the model
    elif is_synthetic(args.data):
        synthetic_count(args.data, 1)  # refuses synthetic:0 before loading the model
    else:
        if not Path(args.data).is_file():
            raise InputError(f"--data {args.data}: file not found (expected an SA-Co style JSON, "
                             "synthetic or synthetic:N)")
        image_paths(args.data, datapoints_by_file(args.data), args.images)
    model = build.load(args.model or None, device=args.device)
    if is_synthetic(args.data) or is_foreign(args.data):
        args.data = str(synthetic_test_set(args.data, out, model.config.vision.image_size))
    return predict_dataset(model, args.data, args.images, out / "predictions.json",
                           args.dump_threshold, model_name=model_label(args.model))


def _train_frequencies(args):
    """--train-annotations: phrase -> share of training images (concept-frequency strata)."""
    if not args.train_annotations:
        return None
    if not Path(args.train_annotations).is_file():
        raise InputError(f"--train-annotations {args.train_annotations}: file not found")
    data = load_json(args.train_annotations)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"--train-annotations {args.train_annotations}: expected a COCO JSON with an 'images' list")
    return training_frequencies(data)


def cmd_eval(args) -> int:
    _check_options(args)
    if args.exemplars:
        return _cmd_exemplars(args)
    if args.interactive:
        return _cmd_interactive(args)
    if args.video:
        return cmd_eval_video(args)
    out = Path(args.out)
    frequencies = _train_frequencies(args)  # read before any model work
    gt_paths = args.gt
    if args.model is not None or args.data is not None:
        if args.model is None:
            raise InputError("--data needs --model (a checkpoint; '' = the shipped model)")
        pred_path = _run_model(args, out)
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
    predicted = [i for i in gt.eval_ids if i in preds.by_image]
    if args.only_predicted:
        if not predicted:
            raise InputError(f"--only-predicted: no datapoint of {gt_paths[0]} has a prediction in {pred_path}")
        gt = restrict(gt, lambda d: d.id in preds.by_image)
    elif args.model is None and len(predicted) < len(gt.eval_ids):
        print(f"note: {len(gt.eval_ids) - len(predicted)} of {len(gt.eval_ids)} datapoints have no "
              f"prediction and are scored as empty (--only-predicted scores the {len(predicted)} predicted)")
    report = evaluate_cgf1(gt, preds, iou_type=args.iou_type, score_threshold=args.threshold)
    paths = write_report(report, preds, gt, out, frequencies=frequencies)
    stats = {}
    if not args.no_coco:
        stats = coco_ap(gt, preds, iou_type=args.iou_type,
                        image_ids=set(predicted) if args.only_predicted else None)
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
                                  "or synthetic[:N] for a held-out synthetic test split, or foreign[:N] for "
                                  "the second renderer's scenes (never trained on)")
    e.add_argument("--images", help="image folder (default: next to --data)")
    e.add_argument("--out", default="eval_out")
    e.add_argument("--iou-type", choices=["segm", "bbox"], default="segm")
    e.add_argument("--threshold", type=float, default=0.5, help="score threshold of SA-Co metrics")
    e.add_argument("--dump-threshold", type=float, default=0.05,
                   help="lowest score written to the predictions (for PR curves, calibration); "
                        "at most --threshold")
    e.add_argument("--only-predicted", action="store_true",
                   help="--pred: score only the datapoints (--video: video-phrase pairs) that have "
                        "a prediction, instead of counting the others as empty")
    e.add_argument("--no-coco", action="store_true", help="skip COCO AP")
    e.add_argument("--train-annotations", help="training COCO / SA-Co JSON: the concept-frequency strata "
                                               "(frequent / rare / never seen) of the report")
    e.add_argument("--exemplars", action="store_true",
                   help="measure exemplar prompting (one box on one instance finds the others) "
                        "on the synthetic test split (--data synthetic:N, --model)")
    e.add_argument("--interactive", action="store_true",
                   help="interaction metrics (NoC@85/90, mIoU vs clicks) of the SAM path with a click "
                        "simulator: --model (with a tracker) and --data synthetic[:N] / COCO JSON")
    e.add_argument("--max-clicks", type=int, default=20, help="--interactive: clicks per instance")
    e.add_argument("--from-text", action="store_true",
                   help="--interactive: also start from the text prompt's mask and report both")
    e.add_argument("--cross-image", action="store_true",
                   help="--exemplars: the exemplar curve, recall against 1, 2 and 3 exemplars boxed "
                        "on the same image or on other images (a concept carried over), beside text")
    e.add_argument("--video", action="store_true",
                   help="video metrics (pHOTA, DetA, AssA, IDSW, masklet cgF1): --gt is YTVIS / SA-Co "
                        "VEval JSON, --pred YTVIS results or `conceptseg track --json` file(s); "
                        "or --model (video checkpoint) and --data synthetic[:N] / annotations JSON")
    e.add_argument("--frames", type=int, default=None,
                   help="--video --data synthetic: frames per synthetic test video (default 12)")
    e.add_argument("--device", default="cpu", help="--model: device to run the model on (cpu, cuda, ...)")
    e.set_defaults(func=cmd_eval)
