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


def test_eval_reports_held_out_pairs_separately(tmp_path, gt, capsys):
    """Synthetic test GT lists its held-out colour-shape pairs: the report splits phrases that
    name one from the others. Perfect predictions on the held-out ones only: 100 there, lower
    on the others."""
    from conceptseg.data.phrases import parse_phrase

    data = json.loads(open(gt).read())
    pairs = {tuple(p) for p in data["info"]["held_out_pairs"]}
    held = {im["id"] for im in data["images"]
            if (parse_phrase(im["text_input"]).get("color"),
                parse_phrase(im["text_input"]).get("shape")) in pairs}
    assert held and len(held) < len(data["images"])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([p for p in _perfect(gt) if p["image_id"] in held]))
    out = tmp_path / "rep"
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(out), "--no-coco"]) == 0
    sub = json.loads((out / "subsets.json").read_text())
    assert sub["held-out pairs"]["num_evaluated"] == len(held)
    assert sub["held-out pairs"]["pmF1"] > 0.999
    assert sub["other phrases"]["num_evaluated"] == len(data["images"]) - len(held)
    assert sub["other phrases"]["pmF1"] < 0.5
    assert "held-out pairs: cgF1" in capsys.readouterr().out


def test_exemplar_groups_and_other_instance_recall():
    from conceptseg.data.synthetic import SceneConfig, make_scene
    from conceptseg.evaluate.exemplar import _gt_json, _other_recall, exemplar_groups

    scenes = [make_scene(s, 96, SceneConfig(split="test")) for s in range(6)]
    groups = [exemplar_groups(s) for s in scenes]
    for sc, gs in zip(scenes, groups):
        assert sorted(i for ids, _ in gs for i in ids) == list(range(len(sc.instances)))
        for ids, boxed in gs:
            assert boxed in ids and len({tuple(sorted(sc.instances[i].attributes.items()))
                                         for i in ids}) == 1
    g = _gt_json(scenes, groups)
    assert any(len(im["instance_ids"]) > 1 for im in g["images"])
    perfect = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 0.9}
               for a in g["annotations"]]
    assert _other_recall(g, perfect, 0.5) == 1.0
    assert _other_recall(g, [dict(p, score=0.3) for p in perfect], 0.5) == 0.0
    boxed_only = [p for p, a in zip(perfect, g["annotations"])
                  if a["instance_index"] == g["images"][a["image_id"] - 1]["boxed_instance"]]
    assert _other_recall(g, boxed_only, 0.5) == 0.0


def test_eval_exemplars_cli(tmp_path, test_model, monkeypatch, capsys):
    import conceptseg.build as build

    monkeypatch.setattr(build, "load", lambda *a, **k: test_model)
    assert main(["eval", "--exemplars", "--model", "x", "--data", "synthetic:2",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "exemplars.json").read_text())
    for kind in ("exemplar", "text"):
        assert 0.0 <= res[kind]["pmF1"] <= 1.0
    assert "exemplar prompt: pmF1" in capsys.readouterr().out
