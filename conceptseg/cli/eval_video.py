"""``conceptseg eval --video``: score video predictions against SA-Co/VEval-style (YTVIS) ground
truth and write report.json, pairs.jsonl and summary.md; or run a video model first.

    conceptseg eval --video --gt annotations.json --pred results.json --out veval_out
    conceptseg eval --video --gt annotations.json --pred tracks/ --out veval_out
    conceptseg eval --video --model '' --data synthetic:20 --frames 12 --out veval_out
    conceptseg eval --video --model video.safetensors --data annotations.json --out veval_out

``--pred`` is a YTVIS results list (``video_id``, ``category_id``, ``score``, per-frame
``segmentations``), one ``conceptseg track --json`` file, or a folder of them (each matched to
a GT video by its file / folder name and to a phrase by its text).

``--model`` (a video checkpoint, '' = the shipped model) runs the model on ``--data`` first:
``synthetic[:N]`` (a held-out synthetic test split of N videos, default 20, of ``--frames``
frames at the model's image size, written once under ``--out``) or a YTVIS / VEval annotations
JSON whose videos are frame folders or video files next to it (or under ``--images``).  Every
(video, phrase) pair gets the text on frame 0 and forward propagation; finished pairs are kept
in ``predictions.json.partial.jsonl`` so an interrupted run resumes; ``predictions.json`` (YTVIS
results) is then scored as with ``--pred``.  See :mod:`conceptseg.evaluate.video_run`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def _load_pred(path: Path, gt):
    from ..evaluate.io import load_json
    from ..evaluate.video import tracks_to_ytvis

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json")
        if not files:
            raise InputError(f"{path}: no tracker .json files in the folder")
        return tracks_to_ytvis(files, gt)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    data = load_json(path)
    if isinstance(data, dict) and "frames" in data:  # a single `conceptseg track --json` output
        return tracks_to_ytvis([path], gt)
    return data


def _run_model(args):
    """--model + --data: write / find the dataset, predict every pair (resumable); returns
    (GT path, YTVIS predictions)."""
    from ..evaluate.video import load_video_ground_truth
    from ..evaluate.video_run import (DEFAULT_NUM_FRAMES, model_label, predict_videos, resolve_videos,
                            synthetic_video_test_set)

    if args.gt or args.pred:
        raise InputError("--model runs on --data and scores against it: drop --gt / --pred")
    if not args.data:
        raise InputError("--model needs --data (synthetic[:N] or a YTVIS / VEval annotations JSON); "
                         "pass --model '' for the shipped model")
    out = Path(args.out)
    frames = getattr(args, "frames", None)
    synthetic = args.data == "synthetic" or args.data.startswith("synthetic:")
    if frames is not None and (not synthetic or frames < 1):
        raise InputError("--frames (a positive number) sets the length of --data synthetic videos")
    frames = frames or DEFAULT_NUM_FRAMES
    if not synthetic:  # everything cheap first, before loading the model
        gt_path = Path(args.data)
        if not gt_path.is_file():
            raise InputError(f"--data {args.data}: expected synthetic, synthetic:N or a YTVIS / VEval "
                             "annotations JSON (file not found)")
        gt = load_video_ground_truth(str(gt_path))
        videos = resolve_videos(gt_path, gt, args.images)
    elif args.data.partition(":")[2] and not args.data.partition(":")[2].isdigit():
        raise InputError(f"--data {args.data!r}: expected synthetic, synthetic:N or a YTVIS / VEval "
                         "annotations JSON")
    from ..build import load_video_model

    device = getattr(args, "device", None) or "cpu"
    model = load_video_model(args.model or None, device=device)
    if synthetic:
        gt_path = synthetic_video_test_set(args.data, out, model.config.vision.image_size, frames)
        gt = load_video_ground_truth(str(gt_path))
        videos = resolve_videos(gt_path, gt)
    preds = predict_videos(model, gt_path, gt, videos, out / "predictions.json",
                           model_name=model_label(args.model), device=device)
    return gt, preds


def cmd_eval_video(args) -> int:
    from ..evaluate.video import evaluate_video, load_video_ground_truth, write_video_report

    if args.iou_type != "segm":
        raise InputError("--video evaluates masks only (--iou-type segm)")
    if args.model is not None or args.data is not None:
        if args.model is None:
            raise InputError("--data needs --model (a video checkpoint; '' = the shipped model)")
        gt, preds = _run_model(args)
    else:
        if len(args.gt) != 1 or not args.pred:
            raise InputError("--video needs one --gt (YTVIS / SA-Co VEval JSON) and --pred, or "
                             "--model and --data")
        gt_path = Path(args.gt[0])
        if not gt_path.is_file():
            raise InputError(f"file not found: {gt_path}")
        gt = load_video_ground_truth(str(gt_path))
        preds = _load_pred(Path(args.pred), gt)
    report = evaluate_video(gt, preds, score_threshold=args.threshold)
    paths = write_video_report(report, args.out)

    def pct(v):
        return "n/a" if v != v else f"{100 * v:.2f}"

    def num(v, fmt):
        return "n/a" if v != v else format(v, fmt)

    print(f"pHOTA {pct(report.pHOTA)}  DetA {pct(report.DetA)}  AssA {pct(report.AssA)}  "
          f"IDSW {report.IDSW}  cgF1 {num(report.cgF1, '.2f')}  pmF1 {num(report.pmF1, '.4f')}  "
          f"IL_MCC {num(report.IL_MCC, '.4f')}  ({report.counts['num_pairs']} video-phrase pairs)")
    print(f"report: {paths['markdown']} (+ report.json, pairs.jsonl in {args.out}/)")
    return 0
