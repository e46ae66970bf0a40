"""``conceptseg eval`` refuses what would give numbers that lie, in one line and before any work
(issue 17: thresholds, dump threshold, device, --out, synthetic:0, --frames 1, missing data),
says which datapoints / video-phrase pairs had no prediction (or scores only the predicted ones
with --only-predicted), finds images without doubling ``images/`` and draws no progress bars
into non-terminal logs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptseg.cli import main
from conceptseg.ops.masks import rle_encode


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    from conceptseg.data.synthetic import write_coco

    d = tmp_path_factory.mktemp("gt")
    return write_coco(d, 3, seed=7, image_size=96, split="test", progress=False)


@pytest.fixture
def loads(monkeypatch, test_model):
    """Stand in the test model for every load; returns the (path, device) of each load."""
    calls = []

    def load(path=None, **kw):
        calls.append((path, kw.get("device")))
        return test_model

    monkeypatch.setattr("conceptseg.build.load", load)
    monkeypatch.setattr("conceptseg.build.load_video_model", load)
    return calls


def _perfect(gt_path, keep=lambda a: True):
    data = json.loads(Path(gt_path).read_text())
    return [{"image_id": a["image_id"], "category_id": 1, "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": 0.9} for a in data["annotations"] if keep(a)]


def _one_line_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    return err[0]


@pytest.mark.parametrize("exemplars", [False, True])
def test_dump_threshold_above_threshold_refused(tmp_path, gt, loads, capsys, exemplars):
    """--dump-threshold 0.9 --threshold 0.5 reported cgF1 15.46 instead of 32.61: predictions
    between the two were never written and counted as missed (--exemplars kept a fixed 0.05)."""
    data = ["--exemplars", "--data", "synthetic:2"] if exemplars else ["--data", str(gt)]
    argv = ["eval", "--model", "", *data, "--out", str(tmp_path / "o"), "--no-coco"]
    assert main(argv + ["--dump-threshold", "0.9", "--threshold", "0.5"]) == 2
    _one_line_error(capsys, "--dump-threshold")
    assert loads == [] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value", [("--threshold", "1.5"), ("--threshold", "-0.1"),
                                         ("--threshold", "nan"), ("--dump-threshold", "1.5"),
                                         ("--dump-threshold", "-1"), ("--dump-threshold", "nan")])
def test_threshold_outside_unit_interval_refused(tmp_path, gt, capsys, flag, value):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(gt)))
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o"),
                 flag, value]) == 2
    _one_line_error(capsys, flag)
    assert not (tmp_path / "o").exists()


def test_image_eval_honours_device_and_draws_no_progress_off_terminal(tmp_path, gt, loads, capsys):
    """--device reached the model in video mode only; progress bars wrote \\r lines into logs."""
    out = tmp_path / "run"
    assert main(["eval", "--model", "m.pt", "--data", str(gt), "--out", str(out), "--no-coco",
                 "--device", "cpu"]) == 0
    assert loads == [("m.pt", torch.device("cpu"))]
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    assert (out / "report.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
@pytest.mark.parametrize("video", [False, True])
def test_cuda_device_on_cpu_only_torch_refused(tmp_path, gt, loads, capsys, video):
    argv = ["eval", "--model", "", "--data", str(gt) if not video else "synthetic:1",
            "--out", str(tmp_path / "o"), "--device", "cuda"]
    assert main(argv + (["--video"] if video else [])) == 2
    _one_line_error(capsys, "cuda")
    assert loads == []


def test_missing_data_file_is_one_line_before_loading(tmp_path, loads, capsys):
    """`eval --model '' --data nothere.json` raised FileNotFoundError after loading the model."""
    assert main(["eval", "--model", "", "--data", str(tmp_path / "nothere.json"),
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "nothere.json")
    assert loads == [] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra", [[], ["--video"], ["--exemplars"]])
def test_synthetic_zero_refused(tmp_path, loads, capsys, extra):
    """--data synthetic:0 gave an empty report with AP -1."""
    assert main(["eval", "--model", "", "--data", "synthetic:0", "--out", str(tmp_path / "o"),
                 *extra]) == 2
    _one_line_error(capsys, "synthetic:0")
    assert loads == []


def test_one_frame_synthetic_videos_refused(tmp_path, loads, capsys):
    """--frames 1 ended in `ValueError: low >= high` inside the data engine."""
    assert main(["eval", "--video", "--model", "", "--data", "synthetic:2", "--frames", "1",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--frames")
    assert loads == []


@pytest.mark.parametrize("where", ["file", "under a file", "proc"])
def test_out_file_or_unwritable_refused_before_work(tmp_path, gt, loads, capsys, where):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    out = {"file": a_file, "under a file": a_file / "o", "proc": Path("/proc/evalout")}[where]
    for extra in ([], ["--video"]):
        assert main(["eval", "--model", "", "--data", str(gt), "--out", str(out), *extra]) == 2
        _one_line_error(capsys, str(out))
    assert loads == [] and a_file.read_text() == "x"


def test_images_folder_is_not_doubled(tmp_path, gt, loads, capsys):
    """`eval --images DIR` looked for DIR/images/images/... (file_name is images/000000.png)."""
    out = tmp_path / "run"
    images = Path(gt).parent / "images"
    assert main(["eval", "--model", "", "--data", str(gt), "--images", str(images),
                 "--out", str(out), "--no-coco"]) == 0
    assert (out / "report.json").exists()
    capsys.readouterr()
    assert main(["eval", "--model", "", "--data", str(gt), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o2"), "--no-coco"]) == 2
    err = _one_line_error(capsys, "000000.png")
    assert "images/images" not in err and str(tmp_path) in err
    assert len(loads) == 1  # the second run stopped before loading


def test_image_datapoints_without_prediction_noted_or_left_out(tmp_path, gt, capsys):
    data = json.loads(Path(gt).read_text())
    first = data["images"][0]["id"]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(gt, lambda a: a["image_id"] == first)))
    n = len(data["images"])
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "all"),
                 "--no-coco"]) == 0
    assert f"note: {n - 1} of {n} datapoints have no prediction" in capsys.readouterr().out
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "only"),
                 "--only-predicted"]) == 0
    assert "note:" not in capsys.readouterr().out
    rep = json.loads((tmp_path / "only" / "report.json").read_text())
    assert rep["counts"]["num_evaluated"] == 1 and rep["pmF1"] > 0.999
    assert json.loads((tmp_path / "only" / "coco_ap.json").read_text())["AP"] > 0.99
    full = json.loads((tmp_path / "all" / "report.json").read_text())
    assert full["counts"]["num_evaluated"] == n


# ---------------------------------------------------------------------------- video scope

H = W = 8
T = 3


def _box(x0, y0, x1, y1):
    m = np.zeros((1, H, W), bool)
    m[0, y0:y1, x0:x1] = True
    return rle_encode(m)[0]


@pytest.fixture
def video_gt(tmp_path):
    """Two videos x two phrases = four pairs, one GT masklet in each."""
    videos = [{"id": v, "video_name": f"vid{v}", "height": H, "width": W, "length": T,
               "file_names": [f"vid{v}/{t:05d}.jpg" for t in range(T)]} for v in range(2)]
    cats = [{"id": 1, "name": "red square"}, {"id": 2, "name": "blue square"}]
    anns = [{"id": 1 + 2 * v + c - 1, "video_id": v, "category_id": c, "iscrowd": 0,
             "segmentations": [_box(0, 0, 3, 3)] * T} for v in range(2) for c in (1, 2)]
    pairs = [{"video_id": v, "category_id": c} for v in range(2) for c in (1, 2)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"videos": videos, "categories": cats, "annotations": anns,
                                "video_np_pairs": pairs}))
    return path


def test_video_pairs_without_prediction_noted_or_left_out(tmp_path, video_gt, capsys):
    """One track for 1 of the 4 pairs: the other 3 were scored as empty without a word."""
    pytest.importorskip("trackeval")
    track = {"video": "clips/vid0.mp4", "text": "red square", "num_frames": T,
             "frames": [{"frame": t, "objects": [{"id": 0, "score": 0.9, "rle": _box(0, 0, 3, 3)}]}
                        for t in range(T)]}
    pred = tmp_path / "one_track.json"
    pred.write_text(json.dumps(track))
    argv = ["eval", "--video", "--gt", str(video_gt), "--pred", str(pred)]
    assert main(argv + ["--out", str(tmp_path / "all")]) == 0
    assert "note: 3 of 4 video-phrase pairs have no prediction" in capsys.readouterr().out
    assert main(argv + ["--out", str(tmp_path / "only"), "--only-predicted"]) == 0
    assert "note:" not in capsys.readouterr().out
    rep = json.loads((tmp_path / "only" / "report.json").read_text())
    assert rep["counts"]["num_pairs"] == 1 and math.isclose(rep["pHOTA"], 1.0)
    full = json.loads((tmp_path / "all" / "report.json").read_text())
    assert full["counts"]["num_pairs"] == 4 and full["pHOTA"] == pytest.approx(0.5)  # 1 of 4 GT tracks

    # a tracker JSON that found nothing still names its pair: predicted (empty), no note for it
    empty = dict(track, text="blue square", frames=[{"frame": t, "objects": []} for t in range(T)])
    folder = tmp_path / "tracks"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(track))
    (folder / "b.json").write_text(json.dumps(empty))
    assert main(["eval", "--video", "--gt", str(video_gt), "--pred", str(folder), "--only-predicted",
                 "--out", str(tmp_path / "two")]) == 0
    assert json.loads((tmp_path / "two" / "report.json").read_text())["counts"]["num_pairs"] == 2
