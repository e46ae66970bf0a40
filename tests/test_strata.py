"""Stratified failure analysis: per-stratum counts on hand-made ground truth and predictions,
the weakest-strata choice, the report section, and the synthetic engine's visible_fraction."""

import hashlib
import json
import pathlib

import numpy as np
import pytest

from conceptseg.data.coco_export import mask_to_rle
from conceptseg.evaluate import (
    evaluate_cgf1,
    load_ground_truth,
    load_predictions,
    write_report,
)
from conceptseg.evaluate.strata import (
    StratumStats,
    phrase_form,
    stratify,
    training_frequencies,
    weakest,
)

H = W = 200


def _box_mask(x0, y0, side):
    m = np.zeros((H, W), bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def _ann(aid, iid, mask, vis=None):
    ys, xs = np.nonzero(mask)
    a = {"id": aid, "image_id": iid, "category_id": 1, "iscrowd": 0, "segmentation": mask_to_rle(mask),
         "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
         "area": int(mask.sum())}
    if vis is not None:
        a["visible_fraction"] = vis
    return a


def _pred(iid, mask, score=0.9):
    return {"image_id": iid, "category_id": 1, "segmentation": mask_to_rle(mask), "score": score}


SMALL, LARGE = _box_mask(5, 5, 5), _box_mask(90, 90, 100)  # areas 25 (small) and 10000 (large)
MEDIUM_FP, SMALL_FP = _box_mask(20, 120, 40), _box_mask(150, 10, 10)  # areas 1600 and 100


@pytest.fixture()
def case():
    """dp 1 'red circle': a small instance (60 % visible) missed, a large one found exactly and a
    medium false positive on no instance; dp 2 'blue square': negative with a small false positive."""
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W, "text_input": "red circle"},
                     {"id": 2, "file_name": "a.png", "height": H, "width": W, "text_input": "blue square"}],
          "annotations": [_ann(1, 1, SMALL, 0.6), _ann(2, 1, LARGE, 1.0)],
          "categories": [{"id": 1, "name": "object"}]}
    preds = [_pred(1, LARGE), _pred(1, MEDIUM_FP), _pred(2, SMALL_FP), _pred(1, SMALL, score=0.2)]  # below 0.5
    g = load_ground_truth(gt)
    p = load_predictions(preds, g)
    return g, p, evaluate_cgf1(g, p)


def _by(strata, name):
    return {s.label: s for s in strata[name]}


def test_strata_counts_on_hand_made_case(case):
    gt, preds, report = case
    strata, notes = stratify(report, gt, preds, frequencies=({"red circle": 0.5}, 100))
    size = _by(strata, "size")
    assert (size["small"].tp, size["small"].fp, size["small"].fn) == (0, 1, 1)  # the negative's FP by its area
    assert (size["medium"].tp, size["medium"].fp, size["medium"].fn) == (0, 1, 0)
    assert (size["large"].tp, size["large"].fp, size["large"].fn) == (1, 0, 0)
    assert size["small"].precision == 0 and size["small"].recall == 0 and size["medium"].recall is None
    assert size["large"].f1 == 1.0 and size["large"].cgF1 == pytest.approx(100, abs=0.1)
    rel = _by(strata, "relative_area")  # of 40000 px: 25, 100 -> <1%; 1600 -> 4%; 10000 -> 25%
    assert rel["<1%"].support == 1 and rel["<1%"].fp == 1 and rel["3-10%"].fp == 1 and rel["10-30%"].tp == 1
    occ = _by(strata, "occlusion")
    assert (occ["<70% visible"].tp, occ["<70% visible"].fn, occ["<70% visible"].fp) == (0, 1, 0)
    assert occ["<70% visible"].precision is None and occ[">=99% (unoccluded)"].f1 == 1.0
    assert any("2 false positives overlap no ground-truth instance" in n for n in notes)
    crowd = _by(strata, "crowding")
    assert list(crowd) == ["2-3"] and (crowd["2-3"].tp, crowd["2-3"].fp, crowd["2-3"].fn) == (1, 1, 1)
    assert crowd["2-3"].precision == 0.5 and crowd["2-3"].recall == 0.5 and crowd["2-3"].num_datapoints == 2
    form = _by(strata, "phrase_form")
    assert list(form) == ["2 attributes"] and form["2 attributes"].precision == pytest.approx(1 / 3)
    freq = _by(strata, "concept_frequency")
    assert (freq["frequent"].tp, freq["frequent"].fn) == (1, 1) and freq["never seen"].fp == 1
    assert freq["never seen"].support == 0


def test_strata_totals_agree_with_the_report(case):
    gt, preds, report = case
    strata, _ = stratify(report, gt, preds)
    k50 = 0
    tp = report.per_threshold[k50].tp
    fn = report.per_threshold[k50].fn
    fp = report.per_threshold[k50].fp
    for name in ("size", "relative_area", "crowding", "phrase_form"):
        assert sum(s.tp for s in strata[name]) == tp and sum(s.support for s in strata[name]) == tp + fn
    for name in ("size", "relative_area", "phrase_form"):
        assert sum(s.fp for s in strata[name]) == fp


def test_frequency_skipped_without_training_data(case):
    gt, preds, report = case
    strata, notes = stratify(report, gt, preds)
    assert "concept_frequency" not in strata and any("--train-annotations" in n for n in notes)


def test_training_frequencies_from_coco_and_saco_files():
    coco = {"images": [{"id": i} for i in range(4)], "categories": [{"id": 1, "name": "Dog"}, {"id": 2, "name": "cat"}],
            "annotations": [{"image_id": 0, "category_id": 1}, {"image_id": 0, "category_id": 1},
                            {"image_id": 3, "category_id": 1}, {"image_id": 2, "category_id": 2}]}
    assert training_frequencies(coco) == ({"dog": 0.5, "cat": 0.25}, 4)
    saco = {"images": [{"id": 1, "text_input": "dog", "original_img_id": 7},
                       {"id": 2, "text_input": "cat", "original_img_id": 7},
                       {"id": 3, "text_input": "dog", "original_img_id": 8}],
            "annotations": [{"image_id": 1}, {"image_id": 3}]}
    assert training_frequencies(saco) == ({"dog": 1.0}, 2)  # 'cat' is a negative: never seen


def test_phrase_form():
    assert phrase_form("star") == "1 attribute" and phrase_form("large red star") == "3 attributes"
    assert phrase_form("small striped red object") == "3 attributes"
    assert phrase_form("yellow school bus") == "3 words (free text)"


def test_weakest_ignores_small_strata_and_orders_by_f1():
    def s(name, label, tp, fp, fn):
        st = StratumStats(name, label, tp, fp, fn)
        st.finish()
        return st
    strata = {"size": [s("size", "small", 5, 5, 15), s("size", "large", 30, 0, 0)],
              "crowding": [s("crowding", "1 instance", 1, 9, 0), s("crowding", "2-3", 12, 4, 12)],
              "phrase_form": [s("phrase_form", "1 attribute", 15, 2, 10), s("phrase_form", "2 attributes", 0, 0, 0)]}
    weak = weakest(strata, k=3, min_support=20)
    assert [(w.stratification, w.label) for w in weak] == [("size", "small"), ("crowding", "2-3"),
                                                           ("phrase_form", "1 attribute")]
    assert weakest(strata, k=3, min_support=1000) == []


def test_report_names_the_weakest_strata(case, tmp_path):
    gt, preds, report = case
    paths = write_report(report, preds, gt, tmp_path, sweep_thresholds=None)
    md = (tmp_path / "summary.md").read_text()
    assert "## Failure analysis by stratum" in md and "### By size" in md and "fewer than 20" in md
    assert "No stratum has 20 or more instances" in md  # two instances only: nothing ranked
    payload = json.loads((tmp_path / "report.json").read_text())["strata"]
    assert payload["min_support"] == 20 and {"size", "occlusion", "crowding"} <= set(payload["strata"])
    assert pathlib.Path(paths["strata_size"]).stat().st_size > 0


def test_synthetic_split_gets_frequency_from_the_engine(tmp_path):
    from conceptseg.data.synthetic import write_coco

    path = write_coco(tmp_path, 2, seed=5, image_size=64, split="test", progress=False)
    g = load_ground_truth(str(path))
    data = json.loads(path.read_text())
    perfect = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 0.9}
               for a in data["annotations"]]
    p = load_predictions(perfect, g)
    strata, _ = stratify(evaluate_cgf1(g, p), g, p)
    freq = _by(strata, "concept_frequency")
    assert "never seen" in freq and freq["never seen"].f1 == 1.0  # held-out pairs are never seen
    held = [tuple(x) for x in data["info"]["held_out_pairs"]]
    never = [im["text_input"] for im in data["images"] if any(
        f"{c} " in im["text_input"] + " " and im["text_input"].endswith(sh) for c, sh in held)]
    assert never  # the test split names held-out pairs
    assert sum(s.support for s in strata["occlusion"]) == len(data["annotations"])


def test_visible_fraction_recorded_and_matches_the_occlusion():
    from conceptseg.data.scene import make_scene
    from conceptseg.data.scene_sampling import SceneConfig
    from conceptseg.data.shapes import rasterize

    cfg = SceneConfig()
    checked = 0
    for seed in range(12):
        scene = make_scene(seed, 96, cfg, split="train")
        for k, inst in enumerate(scene.instances):
            r = rasterize(inst.attributes["shape"], inst.center[0], inst.center[1], inst.diameter, inst.angle,
                          cfg.supersample)
            full = np.zeros((96, 96), bool)
            sl = r.clipped(96, 96)
            full[sl[0], sl[1]] = r.alpha[sl[2], sl[3]] >= 0.5
            hidden = full & ~inst.mask
            covered = np.zeros_like(hidden)
            for other in scene.instances[k + 1:]:  # later objects are drawn on top
                covered |= other.mask
            assert not (hidden & ~covered).any()  # every hidden in-image pixel is under a later object
            assert inst.visible_fraction == pytest.approx(inst.mask.sum() / r.full_area)
            if hidden.sum() > 0 and r.full_area == full.sum():  # occluded, not cut by the edge
                assert inst.visible_fraction == pytest.approx(1 - hidden.sum() / full.sum())
                checked += 1
    assert checked > 0


def test_annotations_record_visible_fraction_and_nothing_else_changed(tmp_path):
    from conceptseg.data.scene import make_scene
    from conceptseg.data.scene_sampling import SceneConfig, derive_seed
    from conceptseg.data.synthetic import write_coco

    path = write_coco(tmp_path, 3, seed=5, image_size=64, split="test", progress=False)
    data = json.loads(path.read_text())
    by_dp = {im["id"]: im for im in data["images"]}
    for a in data["annotations"]:
        scene = make_scene(derive_seed(5, by_dp[a["image_id"]]["original_img_id"]), 64, SceneConfig(), split="test")
        assert a["visible_fraction"] == round(scene.instances[a["instance_index"]].visible_fraction, 4)
        assert 0.5 <= a["visible_fraction"] <= 1.0
        del a["visible_fraction"]
    # the bytes written before visible_fraction existed (same seed, size, split)
    assert hashlib.sha1(json.dumps(data).encode()).hexdigest() == "1f4d7443d8d45d2973d3c5835667d9111da19565"
    images = b"".join(f.read_bytes() for f in sorted((tmp_path / "images").glob("*.png")))
    assert hashlib.sha1(images).hexdigest() == "e30703f2d1153a6181d932b655df9d19f9393b9f"


def test_eval_cli_train_annotations_feed_the_frequency_strata(tmp_path, capsys):
    from conceptseg.cli import main

    gt = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W, "text_input": "red circle"},
                     {"id": 2, "file_name": "a.png", "height": H, "width": W, "text_input": "blue square"}],
          "annotations": [_ann(1, 1, SMALL, 0.6), _ann(2, 1, LARGE, 1.0)], "categories": [{"id": 1, "name": "object"}]}
    train = {"images": [{"id": i} for i in range(300)], "categories": [{"id": 1, "name": "red circle"}],
             "annotations": [{"image_id": 0, "category_id": 1}]}  # in 1 of 300 images: rare
    for name, obj in (("gt.json", gt), ("pred.json", [_pred(1, LARGE)]), ("train.json", train)):
        (tmp_path / name).write_text(json.dumps(obj))
    base = ["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"), "--no-coco"]
    assert main(base + ["--train-annotations", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")]) == 2
    assert "--train-annotations" in capsys.readouterr().err
    assert main(base + ["--train-annotations", str(tmp_path / "train.json"), "--out", str(tmp_path / "o")]) == 0
    freq = {s["label"]: s for s in json.loads((tmp_path / "o" / "report.json").read_text())["strata"]["strata"]
            ["concept_frequency"]}
    assert (freq["rare"]["tp"], freq["rare"]["fn"]) == (1, 1) and "frequent" not in freq
    assert main(base + ["--out", str(tmp_path / "p")]) == 0
    assert "concept frequency skipped" in (tmp_path / "p" / "summary.md").read_text()
