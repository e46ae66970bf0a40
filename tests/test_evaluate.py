"""Tests for conceptseg.evaluate: hand-computed cgF1 cases, COCO AP, input validation,
the resumable prediction writer and the report writer.  Masks are tiny (8x8)."""

import json
import math
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conceptseg.evaluate import (
    EvalInputError,
    PredictionWriter,
    coco_ap,
    evaluate_predictions,
    load_ground_truth,
    load_predictions,
    saco_gold_paths,
)
from conceptseg.evaluate import saco

H = W = 8


def box_mask(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def make_gt(datapoints, exhaustive=None):
    """datapoints: list of (phrase, [masks]); image ids are 1..N."""
    images, anns = [], []
    for i, (phrase, masks) in enumerate(datapoints, start=1):
        images.append({"id": i, "height": H, "width": W, "text_input": phrase, "file_name": f"{i}.jpg",
                       "is_instance_exhaustive": 1 if exhaustive is None else exhaustive[i - 1]})
        for m in masks:
            r = rle(m)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": r,
                         "bbox": [float(v) for v in mask_utils.toBbox(r)], "area": float(m.sum()), "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def pred(image_id, m, score=0.9, with_box=False):
    p = {"image_id": image_id, "category_id": 1, "score": score, "segmentation": rle(m)}
    if with_box:
        p["bbox"] = [float(v) for v in mask_utils.toBbox(p["segmentation"])]
    return p


A, B, C = box_mask(0, 4, 0, 4), box_mask(4, 8, 4, 8), box_mask(0, 2, 6, 8)


def ev(gt, preds, **kw):
    kw.setdefault("official_eps", False)
    return evaluate_predictions(gt, preds, **kw)


# ----------------------------------------------------------------------------- cgF1 hand cases


def test_perfect_predictions_give_100():
    gt = make_gt([("cat", [A, B]), ("dog", [])])
    preds = [pred(1, A), pred(1, B)]
    r = ev(gt, preds)
    assert r.cgF1 == pytest.approx(100.0) and r.pmF1 == pytest.approx(1.0) and r.IL_MCC == pytest.approx(1.0)
    il = r.image_level
    assert (il.tp, il.fp, il.tn, il.fn) == (1, 0, 1, 0)
    assert all(t.tp == 2 and t.fp == 0 and t.fn == 0 for t in r.per_threshold)
    # the official epsilons (1e-4 / 1e-6 in every denominator) keep it just below 100
    off = ev(gt, preds, official_eps=True)
    assert 99.97 < off.cgF1 < 100.0


def test_negatives_true_negative_and_false_positive():
    # 2 perfect positives, one negative without predictions (TN), one with a prediction (FP)
    gt = make_gt([("a", [A]), ("b", [B]), ("c", []), ("d", [])])
    preds = [pred(1, A), pred(2, B), pred(4, C, 0.8)]
    r = ev(gt, preds)
    il = r.image_level
    assert (il.tp, il.fp, il.tn, il.fn) == (2, 1, 1, 0)
    assert r.IL_MCC == pytest.approx((2 * 1 - 1 * 0) / math.sqrt(3 * 2 * 2 * 1))
    # the FP on a negative datapoint is not part of pmF1 ...
    assert r.pmF1 == pytest.approx(1.0)
    assert r.positive_micro_precision == pytest.approx(1.0)
    # ... but is part of the plain precision
    assert r.precision == pytest.approx(2 / 3)
    assert r.per_threshold[0].fp == 1 and r.per_threshold[0].positive_fp == 0
    assert r.cgF1 == pytest.approx(100 * 2 / math.sqrt(12))


def test_all_negative_split_is_zero():
    # No GT anywhere: TP = FN = 0 so recall and pmF1 are 0/0 -> 0 (the official epsilons make
    # it 0), and IL_MCC has a zero denominator -> 0.  Hence cgF1 = 0 with or without FPs.
    gt = make_gt([("a", []), ("b", [])])
    for preds in ([], [pred(1, A)]):
        for eps in (True, False):
            r = ev(gt, preds, official_eps=eps)
            assert r.pmF1 == 0.0 and r.IL_MCC == 0.0 and r.cgF1 == 0.0
    r = ev(gt, [])
    assert (r.image_level.tn, r.image_level.fp) == (2, 0)
    assert r.counts["num_negative"] == 2 and r.counts["num_positive"] == 0
    r = ev(gt, [pred(1, A)])
    assert (r.image_level.tn, r.image_level.fp) == (1, 1)


def test_duplicate_prediction_is_one_tp_one_fp():
    gt = make_gt([("a", [A]), ("b", [])])
    r = ev(gt, [pred(1, A, 0.9), pred(1, A, 0.8)])
    assert all((t.tp, t.fp, t.fn) == (1, 1, 0) for t in r.per_threshold)
    assert r.pmF1 == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert r.IL_MCC == pytest.approx(1.0)
    assert r.cgF1 == pytest.approx(100 * 2 / 3)


def test_one_missed_object():
    gt = make_gt([("a", [A, B]), ("b", [])])
    r = ev(gt, [pred(1, A)])
    assert all((t.tp, t.fp, t.fn) == (1, 0, 1) for t in r.per_threshold)
    assert r.recall == pytest.approx(0.5) and r.pmF1 == pytest.approx(2 / 3)
    assert r.cgF1 == pytest.approx(100 * 2 / 3)


def test_missed_datapoint_is_image_level_fn():
    gt = make_gt([("a", [A]), ("b", [B]), ("c", [])])
    r = ev(gt, [pred(1, A)])
    il = r.image_level
    assert (il.tp, il.fp, il.tn, il.fn) == (1, 0, 1, 1)
    assert r.IL_MCC == pytest.approx(1 / math.sqrt(1 * 2 * 1 * 2))
    assert r.pmF1 == pytest.approx(2 / 3)


def test_scores_below_threshold_are_ignored():
    gt = make_gt([("a", [A]), ("b", [])])
    r = ev(gt, [pred(1, A, 0.5), pred(1, B, 0.49), pred(2, C, 0.4999)])
    assert r.cgF1 == pytest.approx(100.0)  # 0.5 is kept (>=), below is dropped
    assert r.counts["num_predictions"] == 3 and r.counts["num_predictions_kept"] == 1
    assert r.image_level.tn == 1
    assert ev(gt, [pred(1, A, 0.3)]).image_level.fn == 1


def test_iou_thresholds_are_averaged():
    # pred covers 12 of the 16 GT pixels: IoU = 0.75 -> TP at 0.50..0.75 (6 of 10 thresholds).
    gt = make_gt([("a", [A]), ("b", [])])
    r = ev(gt, [pred(1, box_mask(0, 3, 0, 4))])
    assert [t.tp for t in r.per_threshold] == [1] * 6 + [0] * 4
    assert r.pmF1 == pytest.approx(0.6) and r.cgF1 == pytest.approx(60.0)
    assert r.cgF1_50 == pytest.approx(100.0) and r.cgF1_75 == pytest.approx(100.0)
    # cgF1 is the mean of per-threshold pmF1_t * IL_MCC (= mean(pmF1) * IL_MCC as MCC is constant)
    assert r.cgF1 == pytest.approx(np.mean([t.cgF1 for t in r.per_threshold]))


def test_matching_maximises_summed_iou():
    # One Hungarian assignment on -IoU for all thresholds (official): p0-g1 + p1-g0 (0.6+0.6)
    # beats the greedy p0-g0 (0.9) + nothing.
    ious = np.array([[0.9, 0.6], [0.6, 0.0]])
    tp, fp, fn, f1, n_gt, n_dt = saco.score_datapoint(ious, np.array([True, True]), saco.IOU_THRESHOLDS, False)
    assert tp.tolist() == [2, 2, 2, 0, 0, 0, 0, 0, 0, 0]  # both matches have IoU 0.6
    assert (n_gt, n_dt) == (2, 2) and fp[-1] == 2 and fn[-1] == 2


def test_multiple_annotators_take_best():
    # datapoint 1: annotator a drew two instances, b one; the model found one -> b is chosen.
    # datapoint 2: a says negative, b drew an object, no prediction -> TN (a) is chosen.
    # datapoint 3: a found nothing, b one object; model predicts it -> b.
    ga = make_gt([("x", [A, B]), ("y", []), ("z", [])])
    gb = make_gt([("x", [A]), ("y", [B]), ("z", [C])])
    preds = [pred(1, A), pred(3, C)]
    r = ev([ga, gb], preds)
    assert [d.annotator for d in r.datapoints] == [1, 0, 1]
    assert r.counts["annotator_selected"] == [1, 2]
    assert r.cgF1 == pytest.approx(100.0)
    # single annotator a: dp1 misses B, dp3 is an image-level FP
    ra = ev(ga, preds)
    assert ra.cgF1 < 100 and ra.image_level.fp == 1
    # ties keep the earlier annotator
    assert [d.annotator for d in ev([gb, gb], preds).datapoints] == [0, 0, 0]


def test_gold_files_from_disk_and_exhaustive_filter(tmp_path):
    g = [make_gt([("x", [A]), ("y", [])], exhaustive=[1, 1]), make_gt([("x", [A]), ("y", [])], exhaustive=[1, 0]),
         make_gt([("x", [A]), ("y", [])], exhaustive=[1, 1])]
    paths = saco_gold_paths(tmp_path, "crowded")
    assert os.path.basename(paths[1]) == "gold_crowded_merged_b_release_test.json"
    for p, d in zip(paths, g):
        with open(p, "w") as f:
            json.dump(d, f)
    gt = load_ground_truth(paths)
    assert gt.num_annotators == 3 and gt.eval_ids == [1]  # 2 is non-exhaustive in file b
    r = ev(paths, [pred(1, A), pred(2, B)])
    assert r.counts["num_excluded_non_exhaustive"] == 1 and r.image_level.fp == 0


def test_box_variant():
    gt = make_gt([("a", [A]), ("b", [])])
    # GT box [0,0,4,4]; predicted box [0,0,4,2] has IoU 0.5 -> TP only at the 0.50 threshold
    r = ev(gt, [{"image_id": 1, "score": 0.9, "bbox": [0, 0, 4, 2]}], iou_type="bbox")
    assert [t.tp for t in r.per_threshold] == [1] + [0] * 9
    assert r.cgF1 == pytest.approx(10.0)
    # a mask prediction is scored by its tight box: a checkerboard inside A has box == A
    cb = A * (np.indices((H, W)).sum(0) % 2 == 0)
    assert ev(gt, [pred(1, cb)], iou_type="bbox").cgF1 == pytest.approx(100.0)
    assert ev(gt, [pred(1, cb)], iou_type="segm").cgF1 < 100.0


def test_normalized_gt_boxes_are_rescaled():
    gt = make_gt([("a", [A]), ("b", [])])
    for ann in gt["annotations"]:
        ann["bbox"] = [v / 8 for v in ann["bbox"]]
        ann["area"] /= 64
    preds = [{"image_id": 1, "score": 0.9, "bbox": [0, 0, 4, 4]}]
    with pytest.warns(UserWarning, match="normalised"):
        r = ev(gt, preds, iou_type="bbox")
    assert r.cgF1 == pytest.approx(100.0)
    assert ev(gt, preds, iou_type="bbox", normalized_boxes=False).cgF1 == 0.0
    with pytest.warns(UserWarning):
        assert coco_ap(gt, preds, iou_type="bbox")["AP"] == pytest.approx(1.0)


def test_per_phrase_stats_and_official_keys():
    gt = make_gt([("cat", [A]), ("cat", [B]), ("dog", [C]), ("eel", [])])
    r = ev(gt, [pred(1, A), pred(3, A)])
    cat, dog, eel = r.per_phrase["cat"], r.per_phrase["dog"], r.per_phrase["eel"]
    assert (cat.num_datapoints, cat.num_positive, cat.tp[0], cat.fp[0], cat.fn[0]) == (2, 2, 1, 0, 1)
    assert cat.f1 == pytest.approx(2 / 3) and dog.f1 == 0.0 and eel.f1 is None
    assert (cat.il_tp, cat.il_fn, eel.il_tn) == (1, 1, 1)
    off = r.official_metrics()
    assert len(off) == 26 and off["cgF1_eval_segm_cgF1"] == pytest.approx(r.cgF1 / 100)
    json.dumps(r.to_dict(include_datapoints=True))


# ----------------------------------------------------------------------------- COCO AP


def test_coco_ap_matches_direct_cocoeval():
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = make_gt([("a", [A, B]), ("b", [C]), ("c", [])])
    preds = [pred(1, A, 0.9, True), pred(1, box_mask(4, 8, 4, 7), 0.6, True), pred(2, B, 0.7, True),
             pred(2, C, 0.3, True), pred(3, A, 0.8, True)]
    for iou_type in ("segm", "bbox"):
        ours = coco_ap(gt, preds, iou_type=iou_type)
        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO()
            cg.dataset = json.loads(json.dumps(gt))
            cg.createIndex()
            res = [{k: v for k, v in p.items() if k != ("bbox" if iou_type == "segm" else "segmentation")}
                   for p in json.loads(json.dumps(preds))]
            e = COCOeval(cg, cg.loadRes(res), iou_type)
            e.evaluate(); e.accumulate(); e.summarize()
        assert list(ours) == ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
        np.testing.assert_allclose(list(ours.values()), e.stats, atol=1e-12)
    assert coco_ap(gt, [])["AP"] == 0.0


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"image_id": 99, "score": 0.9, "bbox": [0, 0, 1, 1]}, "unknown image_id"),
        ({"image_id": 1, "score": 1.5, "bbox": [0, 0, 1, 1]}, "score must be a number in [0, 1]"),
        ({"image_id": 1, "score": float("nan"), "bbox": [0, 0, 1, 1]}, "score"),
        ({"image_id": 1, "bbox": [0, 0, 1, 1]}, "missing 'score'"),
        ({"score": 0.5, "bbox": [0, 0, 1, 1]}, "missing 'image_id'"),
        ({"image_id": 1, "score": 0.5}, "needs 'segmentation' and/or 'bbox'"),
        ({"image_id": 1, "score": 0.5, "bbox": [0, 0, 1]}, "bbox"),
        ({"image_id": 1, "score": 0.5, "segmentation": {"size": [8, 8], "counts": "!!bad"}}, "invalid character"),
        ({"image_id": 1, "score": 0.5, "segmentation": {"size": [8, 8], "counts": "0"}}, "sum to"),
        ({"image_id": 1, "score": 0.5, "segmentation": rle(np.zeros((4, 4), np.uint8))}, "does not match image size"),
        ({"image_id": 1, "score": 0.5, "segmentation": [[0, 0, 1, 0, 1, 1]]}, "RLE dict"),
    ],
)
def test_bad_predictions_raise(bad, needle):
    gt = make_gt([("a", [A])])
    preds = [pred(1, A), pred(1, B), bad]
    with pytest.raises(EvalInputError) as ei:
        ev(gt, preds)
    msg = str(ei.value)
    assert needle in msg and msg.startswith("prediction 2 (image_id=")
    assert ei.value.index == 2 and isinstance(ei.value, ValueError)


def test_bad_ground_truth_raises():
    gt = make_gt([("a", [A]), ("b", [])])
    gt["annotations"][0]["image_id"] = 7
    with pytest.raises(EvalInputError, match=r"annotation 0 \(id=1\).*unknown image_id 7"):
        load_ground_truth(gt)
    gt = make_gt([("a", [A]), ("b", [])])
    gt["images"][1]["id"] = 1
    with pytest.raises(EvalInputError, match=r"image 1 \(id=1\).*duplicate"):
        load_ground_truth(gt)
    gt = make_gt([("a", [A])])
    gt["annotations"][0]["segmentation"]["size"] = [8, 9]
    with pytest.raises(EvalInputError, match="does not match image size"):
        load_ground_truth(gt)
    with pytest.raises(EvalInputError, match="same datapoints"):
        load_ground_truth([make_gt([("a", [A])]), make_gt([("a", [A]), ("b", [])])])


# ----------------------------------------------------------------------------- writer


def test_prediction_writer_resumes_after_crash(tmp_path):
    out = str(tmp_path / "preds.json")
    gt = make_gt([("a", [A]), ("b", [B]), ("c", [])])
    w = PredictionWriter(out)
    w.write(1, [pred(1, A)])
    w.write(3, [])  # a negative with no predictions is recorded as done too
    w._fh.write('{"image_id": 2, "predictions": [{"image_id": 2, "sco')  # crash mid-line
    w._fh.flush()
    del w  # no finalize
    assert not os.path.exists(out)

    w = PredictionWriter(out)
    assert w.done_ids == {1, 3} and 2 not in w
    w.write(2, [{"score": np.float32(0.75), "segmentation": rle(B)}])  # image_id filled in, numpy ok
    assert w.finalize() == out
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    with open(out) as f:
        final = json.load(f)
    assert sorted(p["image_id"] for p in final) == [1, 2]
    with open(out + ".partial.jsonl") as f:
        assert all(json.loads(line) for line in f)  # torn line was truncated
    assert ev(gt, out).cgF1 == pytest.approx(100.0)
    assert load_predictions(out + ".partial.jsonl", load_ground_truth(gt)).count == 2

    assert PredictionWriter(out).done_ids == {1, 2, 3}
    assert PredictionWriter(out, resume=False).done_ids == set()


def test_prediction_writer_refuses_another_runs_partial_file(tmp_path):
    out = str(tmp_path / "p.json")
    gt = make_gt([("a", [A])])
    w = PredictionWriter(out, key={"model": "m1"})
    w.write(1, [pred(1, A)])
    del w
    assert PredictionWriter(out, key={"model": "m1"}).done_ids == {1}
    with pytest.raises(EvalInputError, match="another run"):
        PredictionWriter(out, key={"model": "m2"})
    # the key line does not disturb reading the partial file as predictions
    assert load_predictions(out + ".partial.jsonl", load_ground_truth(gt)).count == 1


def test_prediction_writer_rejects_corrupt_middle_line(tmp_path):
    out = str(tmp_path / "p.json")
    with open(out + ".partial.jsonl", "w") as f:
        f.write('{"image_id": 1, "predictions": []}\nnot json\n{"image_id": 2, "predictions": []}\n')
    with pytest.raises(EvalInputError, match="corrupt line 2"):
        PredictionWriter(out)


# ----------------------------------------------------------------------------- report


def test_write_report(tmp_path):
    pytest.importorskip("matplotlib")
    from conceptseg.evaluate import write_report

    gt = make_gt([("cat", [A]), ("cat", [B]), ("dog", [C]), ("eel", []), ("fox", [])])
    preds = [pred(1, A, 0.95), pred(2, A, 0.6), pred(3, C, 0.4), pred(4, B, 0.7), pred(5, C, 0.1)]
    r = ev(gt, preds)
    paths = write_report(r, preds, gt, tmp_path / "rep")
    for k in ("json", "markdown", "datapoints", "phrase_f1", "pr_curve", "score_hist", "calibration"):
        assert os.path.getsize(paths[k]) > 0, k
    with open(paths["json"]) as f:
        data = json.load(f)
    assert data["cgF1"] == pytest.approx(r.cgF1)
    sweep = {s["score_threshold"]: s for s in data["score_sweep"]}
    assert sweep[0.5]["cgF1"] == pytest.approx(r.cgF1)
    assert sweep[0.05]["recall"] >= sweep[0.95]["recall"]
    with open(paths["phrase_f1"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    md = open(paths["markdown"]).read()
    assert "cgF1" in md and "cat" in md
