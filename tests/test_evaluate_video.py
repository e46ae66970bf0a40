"""Video metrics (pHOTA via trackeval, CLEAR IDSW, masklet cgF1) on tiny hand-made cases."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("trackeval")

from conceptseg.ops.masks import rle_encode  # noqa: E402
from conceptseg.errors import EvalInputError  # noqa: E402
from conceptseg.evaluate.video import (evaluate_video, load_video_ground_truth, masklet_iou,  # noqa: E402
                                       track_json_to_ytvis, tracks_to_ytvis, video_summary_markdown,
                                       write_video_report)

H = W = 8
T = 4


def encode_mask(m):
    return rle_encode(np.asarray(m)[None])[0]


def box(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return encode_mask(m)


A = [box(0, 0, 3, 3)] * T  # object A: top-left square, every frame
B = [box(5, 5, 8, 8)] * T  # object B: bottom-right square


def gt_doc(annotations, pairs, videos=1):
    """One (or more) 4-frame 8x8 videos; ``annotations`` = [(video, phrase, segmentations)],
    ``pairs`` = [(video, phrase)] datapoints (negatives included)."""
    return {
        "videos": [{"id": v, "video_name": f"vid{v}", "file_names": [f"vid{v}/{t:05d}.png" for t in range(T)],
                    "height": H, "width": W, "length": T} for v in range(videos)],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}, {"id": 3, "name": "star"}],
        "annotations": [{"id": i + 1, "video_id": v, "category_id": c, "iscrowd": 0, "height": H, "width": W,
                         "segmentations": segs} for i, (v, c, segs) in enumerate(annotations)],
        "video_np_pairs": [{"id": i, "video_id": v, "category_id": c,
                            "num_masklets": sum(a[:2] == (v, c) for a in annotations)}
                           for i, (v, c) in enumerate(pairs)],
    }


def pred(segs, score=0.9, video=0, phrase=1):
    return {"video_id": video, "category_id": phrase, "score": score, "segmentations": list(segs)}


PAIRS = [(0, 1), (0, 2), (0, 3)]  # phrase 1 positive (A, B); phrases 2 and 3 negative
GT = gt_doc([(0, 1, A), (0, 1, B)], PAIRS)


def test_perfect_predictions():
    rep = evaluate_video(GT, [pred(A), pred(B)])
    assert rep.pHOTA == pytest.approx(1.0) and rep.DetA == pytest.approx(1.0) and rep.AssA == pytest.approx(1.0)
    assert rep.IDSW == 0 and rep.IDF1 == pytest.approx(1.0) and rep.MOTA == pytest.approx(1.0)
    assert rep.cgF1 > 99.9 and rep.IL_MCC > 0.999 and rep.pmF1 > 0.999
    il = rep.image_level
    assert (il.tp, il.fp, il.tn, il.fn) == (1, 0, 2, 0)
    assert rep.counts["num_pairs"] == 3 and rep.counts["num_hota_sequences"] == 1
    pos = next(p for p in rep.pairs if p.category_id == 1)
    assert pos.HOTA == pytest.approx(1.0) and pos.F1 == 1.0 and pos.tp == [2] * 10
    assert all(p.HOTA is None and p.il == "TN" and p.F1 == 1.0 for p in rep.pairs if p.category_id != 1)
    off = rep.official_metrics()
    assert off["video_mask_all_phrase_HOTA"] == pytest.approx(1.0)
    assert off["video_mask_demo_cgf1_micro_50_95"] == pytest.approx(rep.cgF1 / 100)


def test_swapped_identity_mid_video():
    # one GT object, predicted by track 1 on frames 0-1 and by track 2 on frames 2-3
    gt = gt_doc([(0, 1, A)], PAIRS)
    first, second = A[:2] + [None, None], [None, None] + A[2:]
    rep = evaluate_video(gt, [pred(first), pred(second)])
    assert rep.IDSW == 1
    assert rep.DetA == pytest.approx(1.0) and rep.AssA == pytest.approx(0.5) and rep.pHOTA < 1
    # each track covers half the masklet: spatio-temporal IoU 0.5 -> one TP at IoU 0.5 only
    p = next(p for p in rep.pairs if p.category_id == 1)
    assert p.tp == [1] + [0] * 9 and p.fp == [1] + [2] * 9 and p.IDSW == 1
    # two objects exchanging identities at frame 2: both GT tracks switch
    rep2 = evaluate_video(GT, [pred(A[:2] + B[2:]), pred(B[:2] + A[2:])])
    assert rep2.IDSW == 2 and rep2.AssA < 1 and rep2.DetA == pytest.approx(1.0)


def test_missed_masklet():
    rep = evaluate_video(GT, [pred(A)])
    assert rep.DetA == pytest.approx(0.5) and rep.AssA == pytest.approx(1.0)
    assert rep.pHOTA == pytest.approx(math.sqrt(0.5)) and rep.IDSW == 0
    t = rep.per_threshold[0]
    assert (t.tp, t.fp, t.fn) == (1, 0, 1)
    assert rep.recall == pytest.approx(0.5, abs=1e-3) and rep.pmF1 == pytest.approx(2 / 3, abs=1e-3)
    assert rep.IL_MCC > 0.999  # the pair is still found


def test_false_positive_on_negative_pair():
    preds = [pred(A), pred(B), pred(B, phrase=2), pred(A, score=0.4, phrase=3)]  # the last is dropped
    rep = evaluate_video(GT, preds)
    il = rep.image_level
    assert (il.tp, il.fp, il.tn, il.fn) == (1, 1, 1, 0)
    assert rep.IL_MCC == pytest.approx(0.5, abs=1e-5)  # (1*1 - 1*0) / sqrt(2*1*2*1)
    assert rep.pmF1 > 0.999  # FPs on negative pairs are not in pmF1 ...
    assert rep.precision == pytest.approx(2 / 3, abs=1e-3)  # ... but are in precision
    assert rep.cgF1 == pytest.approx(100 * rep.pmF1 * rep.IL_MCC, rel=1e-6)
    # HOTA: the negative pair with a kept prediction is a sequence with only false positives
    assert rep.counts["num_hota_sequences"] == 2
    neg = next(p for p in rep.pairs if p.category_id == 2)
    assert neg.HOTA == 0.0 and neg.il == "FP"
    assert rep.DetA == pytest.approx(8 / 12) and rep.AssA == pytest.approx(1.0)
    assert next(p for p in rep.pairs if p.category_id == 3).HOTA is None


def test_score_threshold_is_strict_for_hota_only():
    rep = evaluate_video(GT, [pred(A, score=0.5), pred(B, score=0.5)])
    assert rep.cgF1 > 99.9  # cgF1 keeps score >= 0.5
    assert rep.DetA == 0.0 and rep.pHOTA == 0.0  # HOTA keeps score > 0.5


def test_empty_ground_truth_and_predictions():
    empty_gt = gt_doc([], PAIRS)
    rep = evaluate_video(empty_gt, [])
    assert math.isnan(rep.pHOTA) and rep.IDSW == 0 and rep.counts["num_hota_sequences"] == 0
    assert rep.cgF1 == 0.0 and rep.image_level.tn == 3  # all negative: IL_MCC 0 by convention
    rep = evaluate_video(empty_gt, [pred(A)])
    assert rep.pHOTA == 0.0 and rep.image_level.fp == 1 and rep.cgF1 == 0.0
    rep = evaluate_video(GT, [])
    assert rep.pHOTA == 0.0 and rep.DetA == 0.0 and rep.cgF1 == 0.0 and rep.recall == 0.0
    assert rep.image_level.fn == 1
    assert "n/a" in video_summary_markdown(evaluate_video(empty_gt, []))


def test_masklet_iou_and_empty_frames():
    assert masklet_iou(A, A) == 1.0
    assert masklet_iou(A[:2] + [None, None], A) == pytest.approx(0.5)
    assert masklet_iou(A, B) == 0.0
    assert masklet_iou([None] * T, [None] * T) == 1.0  # official: empty union -> IoU 1
    # an empty predicted mask on a frame is not a HOTA detection
    empty = encode_mask(np.zeros((H, W), bool))
    rep = evaluate_video(GT, [pred(A[:3] + [empty]), pred(B)])
    assert rep.DetA == pytest.approx(7 / 8)


def test_no_video_np_pairs_gives_nan_cgf1():
    gt = dict(GT)
    del gt["video_np_pairs"]
    rep = evaluate_video(gt, [pred(A), pred(B)])
    assert math.isnan(rep.cgF1) and math.isnan(rep.IL_MCC) and rep.pmF1 > 0.999 and rep.pHOTA == pytest.approx(1)


def test_crowd_gt_is_ignored_by_cgf1_only():
    gt = gt_doc([(0, 1, A), (0, 1, B)], PAIRS)
    gt["annotations"][1]["iscrowd"] = 1
    rep = evaluate_video(gt, [pred(A)])
    assert rep.cgF1 > 99.9  # B is crowd: not a missed masklet for cgF1
    assert rep.DetA == pytest.approx(0.5)  # but HOTA (TrackEval YouTubeVIS) counts it


def test_invalid_predictions_are_reported():
    with pytest.raises(EvalInputError, match="one RLE or null per frame"):
        evaluate_video(GT, [pred(A[:3])])
    with pytest.raises(EvalInputError, match="unknown video_id"):
        evaluate_video(GT, [pred(A, video=7)])
    bad = dict(A[0], size=[4, 4])
    with pytest.raises(EvalInputError, match="frame 0"):
        evaluate_video(GT, [pred([bad] + A[1:])])


def test_track_json_conversion():
    doc = {"video": "clips/vid0.mp4", "text": "Square", "num_frames": T, "frames": [
        {"frame": 0, "objects": [{"id": 3, "score": 0.8, "box": [0, 0, 3, 3], "rle": A[0]},
                                 {"id": 5, "score": 0.6, "box": [5, 5, 8, 8], "rle": B[0]}]},
        {"frame": 1, "objects": [{"id": 3, "score": 0.6, "box": [0, 0, 3, 3], "rle": A[1]}]},
    ]}
    res = track_json_to_ytvis(doc, video_id=0, category_id=1)
    assert [r["track_id"] for r in res] == [3, 5]
    assert res[0]["score"] == pytest.approx(0.7) and res[0]["segmentations"][2:] == [None, None]
    assert res[0]["bboxes"][0] == [0.0, 0.0, 3.0, 3.0] and res[0]["areas"][:2] == [9, 9]
    gt = load_video_ground_truth(GT)
    assert tracks_to_ytvis([doc], gt) == res  # video by file stem, phrase case-insensitively
    with pytest.raises(EvalInputError, match="matches no video"):
        tracks_to_ytvis([dict(doc, video="other.mp4")], gt)


def test_synthetic_dataset_perfect_and_cli(tmp_path, capsys):
    from conceptseg.cli import main
    from conceptseg.data.synthetic_video import write_video_dataset

    gt_path = write_video_dataset(tmp_path / "ds", 2, seed=3, num_frames=4, image_size=48, progress=False)
    gt = json.loads(gt_path.read_text())
    preds = [pred(a["segmentations"], 0.9, a["video_id"], a["category_id"]) for a in gt["annotations"]]
    rep = evaluate_video(gt_path, preds)
    assert rep.pHOTA == pytest.approx(1.0) and rep.IDSW == 0 and rep.cgF1 > 99.9
    paths = write_video_report(rep, tmp_path / "lib")
    assert json.loads(open(paths["json"]).read())["official_metrics"]["video_mask_all_phrase_HOTA"] == 1.0
    assert len(open(paths["pairs"]).read().splitlines()) == len(gt["video_np_pairs"])

    pred_path = tmp_path / "preds.json"
    pred_path.write_text(json.dumps(preds))
    out = tmp_path / "out"
    assert main(["eval", "--video", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 0
    assert "pHOTA 100.00" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["IDSW"] == 0
    assert "| pHOTA |" in (out / "summary.md").read_text()

    # a folder of `conceptseg track --json` outputs: every positive pair, one masklet each
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    for i, a in enumerate(gt["annotations"]):
        name = gt["videos"][a["video_id"]]["video_name"]
        doc = {"video": f"frames/{name}", "text": a["noun_phrase"], "num_frames": 4, "frames": [
            {"frame": t, "objects": [{"id": 1, "score": 0.9, "box": [0, 0, 1, 1], "rle": s}] if s else []}
            for t, s in enumerate(a["segmentations"])]}
        (tracks / f"{i}.json").write_text(json.dumps(doc))
    assert main(["eval", "--video", "--gt", str(gt_path), "--pred", str(tracks), "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["pHOTA"] == pytest.approx(1.0)

    preds[0]["segmentations"] = preds[0]["segmentations"][:2]
    pred_path.write_text(json.dumps(preds))
    assert main(["eval", "--video", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "entry 0" in err[0]
