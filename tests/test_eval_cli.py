"""conceptseg eval: GT + predictions -> report files; a model run is streamed and resumable."""

import json

import pytest

from conceptseg.cli import main


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    from conceptseg.data.synthetic import write_coco

    d = tmp_path_factory.mktemp("gt")
    return write_coco(d, 3, seed=7, image_size=96, split="test", progress=False)


def _perfect(gt_path):
    data = json.loads(open(gt_path).read())
    return [{"image_id": a["image_id"], "category_id": 1, "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": 0.9} for a in data["annotations"]]


def test_eval_gt_pred_writes_report(tmp_path, gt, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(gt)))
    out = tmp_path / "rep"
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["cgF1"] > 99.9
    assert json.loads((out / "coco_ap.json").read_text())["AP"] > 0.99
    for f in ("summary.md", "pr_curve.png", "phrase_f1.png", "score_hist.png", "calibration.png"):
        assert (out / f).stat().st_size > 0
    assert "cgF1 99.9" in capsys.readouterr().out


def test_eval_bad_prediction_is_one_line(tmp_path, gt, capsys):
    preds = _perfect(gt)
    preds[1]["image_id"] = 987654
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(preds))
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "987654" in err[0]


def test_eval_model_run_resumes(tmp_path, gt, test_model, monkeypatch):
    from conceptseg.checkpoint import save_checkpoint
    from conceptseg.inference import image as image_mod

    ckpt = save_checkpoint(test_model, tmp_path / "m.safetensors")
    out = tmp_path / "run"
    calls, crash = [], [True]
    orig = image_mod.ImagePredictor.set_image

    def set_image(self, img):
        calls.append(str(img))
        if crash[0] and len(calls) == 2:
            raise KeyboardInterrupt
        return orig(self, img)

    monkeypatch.setattr(image_mod.ImagePredictor, "set_image", set_image)
    argv = ["eval", "--model", str(ckpt), "--data", str(gt), "--out", str(out), "--no-coco"]
    assert main(argv) == 130  # interrupted while on the second image
    first = calls[0]
    crash[0] = False
    calls.clear()
    assert main(argv) == 0
    assert len(calls) == 2 and first not in calls  # the finished image is not redone
    assert (out / "report.json").exists() and (out / "predictions.json").exists()
