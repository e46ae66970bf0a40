"""``conceptseg eval --video``: score video predictions against SA-Co/VEval-style (YTVIS) ground
truth and write report.json, pairs.jsonl and summary.md.

    conceptseg eval --video --gt annotations.json --pred results.json --out veval_out
    conceptseg eval --video --gt annotations.json --pred tracks/ --out veval_out

``--pred`` is a YTVIS results list (``video_id``, ``category_id``, ``score``, per-frame
``segmentations``), one ``conceptseg track --json`` file, or a folder of them (each matched to
a GT video by its file / folder name and to a phrase by its text).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def _load_pred(path: Path, gt):
    from .io import load_json
    from .video import tracks_to_ytvis

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


def cmd_eval_video(args) -> int:
    from .video import evaluate_video, load_video_ground_truth, write_video_report

    if args.model is not None or args.data is not None:
        raise InputError("--video scores existing predictions (--gt and --pred); produce them with "
                         "`conceptseg track --json`")
    if len(args.gt) != 1 or not args.pred:
        raise InputError("--video needs one --gt (YTVIS / SA-Co VEval JSON) and --pred")
    if args.iou_type != "segm":
        raise InputError("--video evaluates masks only (--iou-type segm)")
    gt_path = Path(args.gt[0])
    if not gt_path.is_file():
        raise InputError(f"file not found: {gt_path}")
    gt = load_video_ground_truth(str(gt_path))
    preds = _load_pred(Path(args.pred), gt)
    report = evaluate_video(gt, preds, score_threshold=args.threshold)
    paths = write_video_report(report, args.out)

    def pct(v):
        return "n/a" if v != v else f"{100 * v:.2f}"

    print(f"pHOTA {pct(report.pHOTA)}  DetA {pct(report.DetA)}  AssA {pct(report.AssA)}  "
          f"IDSW {report.IDSW}  cgF1 {report.cgF1:.2f}  pmF1 {report.pmF1:.4f}  IL_MCC {report.IL_MCC:.4f}  "
          f"({report.counts['num_pairs']} video-phrase pairs)")
    print(f"report: {paths['markdown']} (+ report.json, pairs.jsonl in {args.out}/)")
    return 0
