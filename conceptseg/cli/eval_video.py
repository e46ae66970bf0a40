"""``conceptseg eval --video``: score video predictions against SA-Co/VEval-style (YTVIS) ground
truth and write report.json, pairs.jsonl and summary.md; or run a video model first.

    conceptseg eval --video --gt annotations.json --pred results.json --out veval_out
    conceptseg eval --video --gt annotations.json --pred tracks/ --out veval_out
    conceptseg eval --video --model '' --data synthetic:20 --frames 12 --out veval_out
    conceptseg eval --video --model video.safetensors --data annotations.json --out veval_out

``--pred`` is a YTVIS results list (``video_id``, ``category_id``, ``score``, per-frame
``segmentations``), one ``conceptseg track --json`` file, or a folder of them (each matched to
a GT video by its file / folder name and to a phrase by its text).  Pairs of the ground truth
that no prediction covers are scored as empty (a note says how many), or left out with
``--only-predicted``.

``--model`` (a video checkpoint, '' = the shipped model) runs the model on ``--data`` first:
``synthetic[:N]`` (a held-out synthetic test split of N videos, default 20, of ``--frames``
frames at the model's image size, written once under ``--out``) or a YTVIS / VEval annotations
JSON whose videos are frame folders or video files next to it (or under ``--images``).  Every
(video, phrase) pair gets the text on frame 0 and forward propagation; finished pairs are kept
in ``predictions.json.partial.jsonl`` so an interrupted run resumes; ``predictions.json`` (YTVIS
results) is then scored as with ``--pred``.  See :mod:`conceptseg.evaluate.video.run`.
"""

from __future__ import annotations

from pathlib import Path

from .. import build  # build.load_video_model is looked up on use (tests stand in a model)
from ..errors import InputError
from ..evaluate.inputs import load_json, synthetic_count
from ..evaluate.video import (evaluate_video, load_video_ground_truth, load_video_predictions, restrict_pairs,
                              scored_pairs, tracks_by_pair, write_video_report)
from ..evaluate.video.run import (DEFAULT_NUM_FRAMES, DEFAULT_NUM_VIDEOS, MIN_NUM_FRAMES, predict_videos,
                                  resolve_videos, synthetic_video_test_set)
from ..evaluate.writer import model_label


def is_synthetic(spec: str) -> bool:
    """``--data synthetic`` or ``synthetic:N`` (not a file that happens to start with the word)."""
    return spec == "synthetic" or spec.startswith("synthetic:")


def _load_pred(path: Path, gt):
    """(validated predictions, the pairs they predict) from a YTVIS results list, one tracker
    JSON or a folder of them (a tracker JSON names its pair even when it found nothing)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json")
        if not files:
            raise InputError(f"{path}: no tracker .json files in the folder")
        by_pair = tracks_by_pair(files, gt)
    elif not path.is_file():
        raise InputError(f"file not found: {path}")
    else:
        data = load_json(path)
        if not (isinstance(data, dict) and "frames" in data):  # a YTVIS results list
            preds = load_video_predictions(data, gt)
            return preds, {(p.video_id, p.category_id) for p in preds}
        by_pair = tracks_by_pair([path], gt)  # a single `conceptseg track --json` output
    return load_video_predictions([p for ps in by_pair.values() for p in ps], gt), set(by_pair)


def _run_model(args):
    """--model + --data: write / find the dataset, predict every pair (resumable); returns
    (GT, YTVIS predictions)."""
    if args.gt or args.pred:
        raise InputError("--model runs on --data and scores against it: drop --gt / --pred")
    if not args.data:
        raise InputError("--model needs --data (synthetic[:N] or a YTVIS / VEval annotations JSON); "
                         "pass --model '' for the shipped model")
    out = Path(args.out)
    frames = args.frames
    synthetic = is_synthetic(args.data)
    if frames is not None and (not synthetic or frames < MIN_NUM_FRAMES):
        raise InputError(f"--frames (at least {MIN_NUM_FRAMES}) sets the length of --data synthetic videos")
    frames = frames or DEFAULT_NUM_FRAMES
    if not synthetic:  # everything cheap first, before loading the model
        gt_path = Path(args.data)
        if not gt_path.is_file():
            raise InputError(f"--data {args.data}: expected synthetic, synthetic:N or a YTVIS / VEval "
                             "annotations JSON (file not found)")
        gt = load_video_ground_truth(str(gt_path))
        videos = resolve_videos(gt_path, gt, args.images)
    else:
        synthetic_count(args.data, DEFAULT_NUM_VIDEOS)  # refuses synthetic:0 before loading the model
    model = build.load_video_model(args.model or None, device=args.device)
    if synthetic:
        gt_path = synthetic_video_test_set(args.data, out, model.config.vision.image_size, frames)
        gt = load_video_ground_truth(str(gt_path))
        videos = resolve_videos(gt_path, gt)
    preds = predict_videos(model, gt_path, gt, videos, out / "predictions.json",
                           model_name=model_label(args.model), device=args.device)
    return gt, preds


def cmd_eval_video(args) -> int:
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
        preds, predicted = _load_pred(Path(args.pred), gt)
        pairs = scored_pairs(gt, predicted)
        covered = [k for k in pairs if k in predicted]
        if args.only_predicted:
            if not covered:
                raise InputError(f"--only-predicted: no video-phrase pair of {gt_path} has a prediction")
            gt = restrict_pairs(gt, covered)
        elif len(covered) < len(pairs):
            print(f"note: {len(pairs) - len(covered)} of {len(pairs)} video-phrase pairs have no prediction "
                  f"and are scored as empty (--only-predicted scores the {len(covered)} predicted)")
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
