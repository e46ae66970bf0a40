"""Interaction metrics: the click simulator on hand-made masks, the NoC conventions, and
`conceptseg eval --interactive` end to end with the `test` video model."""

import json

import numpy as np
import pytest
import torch

from conceptseg.cli import main
from conceptseg.evaluate.interactive import (
    mask_iou,
    next_click,
    noc,
    simulate_instance,
    start_from_text,
    summarize_curves,
)


def _square(h, w, y0, x0, side):
    m = np.zeros((h, w), bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def test_first_click_lands_at_the_centre_of_a_square():
    gt = _square(31, 41, 5, 10, 11)  # rows 5..15, columns 10..20: centre (x 15, y 10)
    c = next_click(np.zeros_like(gt), gt)
    assert (c.x, c.y, c.positive) == (15, 10, True)


def test_square_touching_the_border_counts_the_border_as_boundary():
    gt = _square(20, 20, 0, 0, 9)  # centre (4, 4): the image edge is a boundary too
    c = next_click(np.zeros_like(gt), gt)
    assert (c.x, c.y) == (4, 4)


def test_false_positive_region_gets_a_negative_click():
    gt = _square(40, 40, 2, 2, 7)
    pred = gt | _square(40, 40, 20, 20, 13)  # the extra square is the largest error region
    c = next_click(pred, gt)
    assert (c.x, c.y, c.positive) == (26, 26, False)
    assert c.positive is False and not gt[c.y, c.x] and pred[c.y, c.x]


def test_largest_error_region_wins_and_agreement_stops():
    gt = _square(40, 40, 0, 0, 15)
    pred = gt.copy()
    pred[0:4, 0:4] = False  # small false negative
    pred |= _square(40, 40, 25, 25, 9)  # larger false positive
    assert next_click(pred, gt).positive is False
    pred2 = gt.copy()
    pred2[0:10, 0:10] = False  # now the missed part is larger
    pred2 |= _square(40, 40, 30, 30, 3)
    c = next_click(pred2, gt)
    assert c.positive is True and gt[c.y, c.x] and not pred2[c.y, c.x]
    assert next_click(gt, gt) is None


def test_noc_conventions():
    curve = [0.0, 0.5, 0.86, 0.95, 0.97]  # index k = IoU after k clicks
    assert noc(curve, 0.85, 4) == 2 and noc(curve, 0.90, 4) == 3
    assert noc([0.0, 0.3, 0.6], 0.85, 2) == 2  # never reached: counts as the maximum
    assert noc([0.92, 0.5, 0.95], 0.90, 2) == 0  # the starting (text) mask already reaches it
    s = summarize_curves([curve, [0.0, 0.2, 0.4, 0.6, 0.8]], 4)
    assert s["NoC@85"] == pytest.approx((2 + 4) / 2) and s["NoC@90"] == pytest.approx((3 + 4) / 2)
    assert s["never_90"] == pytest.approx(0.5) and s["never_85"] == pytest.approx(0.5)
    assert s["mIoU_at_clicks"] == pytest.approx([0.0, 0.35, 0.63, 0.775, 0.885])


class _Oracle:
    """A fake predictor: each positive click adds the 7x7 square around it, each negative click
    removes one; records what it was given."""

    def __init__(self, shape):
        self.shape, self.calls = shape, []

    def refine(self, points, labels, mask_input=None):
        self.calls.append((list(map(tuple, points)), list(labels), mask_input))
        m = np.zeros(self.shape, bool) if mask_input is None else np.asarray(mask_input) > 0
        x, y = points[-1]
        m[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = bool(labels[-1])

        class R:
            masks = torch.from_numpy(m[None])
            logits = torch.from_numpy(m[None].astype(np.float32) * 2 - 1)
        return R


def test_simulation_accumulates_clicks_and_feeds_back_logits():
    gt = _square(30, 30, 5, 5, 7)
    oracle = _Oracle(gt.shape)
    curve = simulate_instance(oracle, gt, max_clicks=3)
    assert curve == [0.0, 1.0, 1.0, 1.0]  # one click at the centre covers the square exactly
    assert len(oracle.calls) == 1 and oracle.calls[0][:2] == ([(8, 8)], [1]) and oracle.calls[0][2] is None
    big = _square(30, 30, 2, 2, 20)
    oracle = _Oracle(big.shape)
    curve = simulate_instance(oracle, big, max_clicks=4)
    assert len(curve) == 5 and curve[0] == 0.0 and curve[1] < curve[2] < curve[3]
    pts, labs, logits = oracle.calls[2]
    assert len(pts) == 3 and labs == [1, 1, 1] and logits is not None  # previous logits fed back
    start = big.copy()
    start[:, 15:] = False
    oracle = _Oracle(big.shape)
    curve = simulate_instance(oracle, big, max_clicks=2, start=start)
    assert curve[0] == pytest.approx(mask_iou(start, big))
    assert oracle.calls[0][2] is not None and oracle.calls[0][1] == [1]  # the start mask as logits


def test_start_from_text_picks_the_best_matching_instance():
    gt = _square(20, 20, 2, 2, 5)

    class P:
        masks = torch.from_numpy(np.stack([_square(20, 20, 10, 10, 5), _square(20, 20, 3, 3, 5)]))

        def __len__(self):
            return 2
    mask, iou = start_from_text(P(), gt)
    assert iou == pytest.approx(mask_iou(_square(20, 20, 3, 3, 5), gt)) and mask[3, 3]

    class Empty:
        def __len__(self):
            return 0
    assert start_from_text(Empty(), gt) == (None, 0.0)


@pytest.fixture(scope="module")
def video_ckpt(tmp_path_factory):
    from conceptseg.build import build_video_model, save_video_checkpoint

    path = tmp_path_factory.mktemp("vm") / "video.safetensors"
    return save_video_checkpoint(build_video_model("test", seed=0), path)


def test_eval_interactive_end_to_end_and_resume(tmp_path, video_ckpt, capsys):
    out = tmp_path / "inter"
    argv = ["eval", "--interactive", "--model", str(video_ckpt), "--data", "synthetic:2", "--max-clicks", "3",
            "--from-text", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "from nothing" in printed and "from text" in printed
    rep = json.loads((out / "interactive.json").read_text())
    gt = json.loads(next(out.glob("synthetic_test_2/annotations.json")).read_text())
    unique = {(im["original_img_id"], a["instance_index"]) for a in gt["annotations"]
              for im in gt["images"] if im["id"] == a["image_id"]}
    assert rep["num_instances"] == len(unique) == len(rep["instances"]) > 0
    for mode in ("from_nothing", "from_text"):
        s = rep[mode]
        assert len(s["mIoU_at_clicks"]) == 4 and 0 <= s["NoC@90"] <= 3 and 0 <= s["never_90"] <= 1
        assert all(len(r[mode]) == 4 and all(0 <= v <= 1 for v in r[mode]) for r in rep["instances"])
    assert rep["from_nothing"]["mIoU_at_clicks"][0] == 0.0
    md = (out / "interactive.md").read_text()
    assert "NoC@85" in md and "from text" in md and "counts as 3" in md
    assert (out / "interactive_miou.png").stat().st_size > 0
    assert main(argv) == 0  # everything recorded: resumes without clicking again
    assert "resuming: 2 of 2 images already done" in capsys.readouterr().out
    assert json.loads((out / "interactive.json").read_text())["from_text"] == rep["from_text"]


def test_eval_interactive_needs_a_tracker(tmp_path, test_model, capsys):
    from conceptseg.checkpoint import save_checkpoint

    ckpt = save_checkpoint(test_model, tmp_path / "image_only.safetensors")
    rc = main(["eval", "--interactive", "--model", str(ckpt), "--data", "synthetic:1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "tracker" in err


def test_eval_interactive_on_a_plain_coco_file(tmp_path, video_ckpt):
    """Category names are the phrases of a plain COCO file (no text_input); polygons are fine."""
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(tmp_path / "img" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 80}],
            "categories": [{"id": 3, "name": "red square"}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": [10, 10, 20, 20],
                             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "o"
    assert main(["eval", "--interactive", "--model", str(video_ckpt), "--data", str(tmp_path / "coco.json"),
                 "--images", str(tmp_path / "img"), "--max-clicks", "2", "--from-text", "--out", str(out)]) == 0
    rec = json.loads((out / "interactive.json").read_text())["instances"]
    assert [r["phrase"] for r in rec] == ["red square"] and rec[0]["area"] == 400
