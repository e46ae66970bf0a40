"""``conceptseg eval --video --model M --data synthetic:N``: run a video model on the held-out
synthetic video split, stream predictions resumably, score with pHOTA / IDSW / cgF1."""

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("trackeval")

from conceptseg.cli import main  # noqa: E402
from conceptseg.inference.video.results import StoredFrame as _Stored  # noqa: E402
from conceptseg.inference.video.results import VideoResults  # noqa: E402

FRAMES = 4


@pytest.fixture(scope="module")
def video_model():
    from conceptseg.build import build_video_model

    return build_video_model("test", seed=0)


@pytest.fixture
def use_model(monkeypatch, video_model):
    """--model '' loads the random-weight `test` model; returns the list of load calls."""
    loads = []

    def load(path=None, **kw):
        loads.append(path)
        return video_model

    monkeypatch.setattr("conceptseg.build.load_video_model", load)
    return loads


def _count_add_text(monkeypatch, crash_at=None):
    """Count real VideoSession.add_text calls (one per (video, phrase) pair run); optionally
    interrupt the run on call number ``crash_at``."""
    from conceptseg.inference.video import VideoSession

    calls = []
    orig = VideoSession.add_text

    def add_text(self, text, frame=0):
        calls.append(text)
        if crash_at is not None and len(calls) == crash_at:
            raise KeyboardInterrupt
        return orig(self, text, frame)

    monkeypatch.setattr(VideoSession, "add_text", add_text)
    return calls


def _run(out, data="synthetic:2", *extra):
    return main(["eval", "--video", "--model", "", "--data", data, "--frames", str(FRAMES),
                 "--out", str(out), *extra])


def _gt_path(out: Path) -> Path:
    (path,) = out.glob("synthetic_video_test_2x*/annotations.json")
    return path


def test_model_run_writes_report_and_resumes(tmp_path, use_model, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = _count_add_text(monkeypatch, crash_at=3)
    assert _run(out) == 130  # interrupted on the third pair
    partial = out / "predictions.json.partial.jsonl"
    lines = partial.read_text().splitlines()
    assert len(lines) == 1 + 2 and "header" in json.loads(lines[0])  # two finished pairs kept
    assert not (out / "predictions.json").exists()
    with open(partial, "a") as f:  # a line torn by a crash is dropped on resume
        f.write('{"video_id": 0, "categ')

    calls = _count_add_text(monkeypatch)
    assert _run(out) == 0
    gt = json.loads(_gt_path(out).read_text())
    pairs = gt["video_np_pairs"]
    assert len(gt["videos"]) == 2 and all(v["length"] == FRAMES for v in gt["videos"])
    assert gt["videos"][0]["height"] == 56  # the model's image size
    assert len(calls) == len(pairs) - 2  # finished pairs were not recomputed
    text = capsys.readouterr().out
    assert f"resuming: 2 of {len(pairs)}" in text and "pHOTA " in text and "IDSW " in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["counts"]["num_pairs"] == len(pairs) and rep["counts"]["num_videos"] == 2
    assert rep["pHOTA"] is None or 0.0 <= rep["pHOTA"] <= 1.0
    assert rep["IDSW"] >= 0 and (rep["cgF1"] is None or 0.0 <= rep["cgF1"] <= 100.0)
    preds = json.loads((out / "predictions.json").read_text())
    assert isinstance(preds, list)
    for p in preds:
        assert len(p["segmentations"]) == FRAMES and 0.0 <= p["score"] <= 1.0
    assert (out / "summary.md").exists() and (out / "pairs.jsonl").exists()
    assert len(use_model) == 2 and use_model[-1] is None  # '' = the shipped model

    # everything done: a third run computes nothing and reuses the written test set
    calls = _count_add_text(monkeypatch)
    mtime = _gt_path(out).stat().st_mtime_ns
    assert _run(out) == 0 and calls == []
    assert _gt_path(out).stat().st_mtime_ns == mtime
    assert json.loads((out / "predictions.json").read_text()) == preds

    # predictions of another model in the same --out: a one-line error, nothing mixed
    capsys.readouterr()
    assert main(["eval", "--video", "--model", "other.pt", "--data", "synthetic:2", "--frames",
                 str(FRAMES), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another run" in err[0]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "", "--data", "synthetic:abc"], "synthetic:N"),
    (["--model", "", "--data", "nope/annotations.json"], "file not found"),
    (["--model", "", "--data", "synthetic:2", "--frames", "0"], "--frames"),
    (["--model", "", "--data", "synthetic:2", "--pred", "x.json"], "--pred"),
    (["--data", "synthetic:2"], "--model"),
])
def test_bad_data_is_one_line_before_loading(tmp_path, use_model, capsys, argv, needle):
    assert main(["eval", "--video", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert use_model == []  # refused before the model is loaded


class OracleSession:
    """Stands in for VideoSession: outputs the GT masklets of (video, phrase) itself, read from
    the annotations next to the frame folder, as a real ``VideoResults``.  ``swap`` exchanges
    the ids of the first two objects from the middle of the clip on."""

    swap = False

    def __init__(self, model, video, **kw):
        self.video = Path(video)
        self.gt = json.loads((self.video.parent.parent / "annotations.json").read_text())
        (v,) = [v for v in self.gt["videos"] if v["video_name"] == self.video.name]
        self.vid, self.num_frames, self.size = v["id"], v["length"], (v["height"], v["width"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def add_text(self, text, frame=0):
        self.anns = [a for a in self.gt["annotations"] if a["video_id"] == self.vid and a["noun_phrase"] == text]

    def propagate(self, direction="forward"):
        return iter([(t, None) for t in range(self.num_frames)])

    def results(self):
        store = {}
        for t in range(self.num_frames):
            objs = []
            for k, a in enumerate(self.anns):
                oid = 1 - k if self.swap and k < 2 and len(self.anns) >= 2 and t >= self.num_frames // 2 else k
                if a["segmentations"][t]:
                    objs.append((oid, a["segmentations"][t]))
            objs.sort(key=lambda o: o[0])
            n = len(objs)
            store[t] = _Stored([o[0] for o in objs], [0.9] * n, torch.zeros(n, 4), torch.zeros(n, 4),
                               [o[1] for o in objs], {}, None)
        return VideoResults(store, self.size)


def test_ground_truth_as_predictions_scores_perfectly(tmp_path, use_model, monkeypatch, capsys):
    """The GT masklets, output by a session and pushed through the same conversion
    (results().to_json() -> YTVIS), writer and scoring: pHOTA 1, IDSW 0, cgF1 100; swapping
    two identities mid-clip must cost ID switches."""
    monkeypatch.setattr("conceptseg.inference.video.VideoSession", OracleSession)
    out = tmp_path / "oracle"
    assert _run(out) == 0
    assert "pHOTA 100.00" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    gt = json.loads(_gt_path(out).read_text())
    assert len(gt["annotations"]) > 0
    assert rep["pHOTA"] == pytest.approx(1.0, abs=1e-12) and rep["AssA"] == pytest.approx(1.0, abs=1e-12)
    assert rep["IDSW"] == 0 and rep["cgF1"] > 99.99 and rep["IL_MCC"] == pytest.approx(1.0)  # official eps
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == len(gt["annotations"])

    # the same GT given as a YTVIS/VEval annotations file (--data path; frames next to it)
    assert _run(tmp_path / "by_path", str(_gt_path(out))) == 2  # --frames is for synthetic data
    assert main(["eval", "--video", "--model", "", "--data", str(_gt_path(out)),
                 "--out", str(tmp_path / "by_path")]) == 0
    assert json.loads((tmp_path / "by_path" / "report.json").read_text())["pHOTA"] == pytest.approx(1.0)

    OracleSession.swap = True
    try:
        assert _run(tmp_path / "swapped") == 0
    finally:
        OracleSession.swap = False
    bad = json.loads((tmp_path / "swapped" / "report.json").read_text())
    assert bad["IDSW"] > 0 and bad["pHOTA"] < 1.0 and not math.isclose(bad["AssA"], 1.0)
    assert bad["DetA"] == pytest.approx(1.0)  # same masks every frame: only association suffers


def test_missing_frames_of_an_annotation_file(tmp_path, use_model, monkeypatch, capsys):
    monkeypatch.setattr("conceptseg.inference.video.VideoSession", OracleSession)
    out = tmp_path / "o"
    assert _run(out) == 0
    gt = _gt_path(out)
    moved = tmp_path / "elsewhere" / "annotations.json"
    moved.parent.mkdir()
    moved.write_text(gt.read_text())
    capsys.readouterr()
    assert main(["eval", "--video", "--model", "", "--data", str(moved), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "video_00000" in err[0]
    # --images points at the frames
    assert main(["eval", "--video", "--model", "", "--data", str(moved), "--images",
                 str(gt.parent / "frames"), "--out", str(tmp_path / "p")]) == 0
