"""VideoSession (conceptseg.inference.video): parity with the official video predictor on its
fixture, prompts, clicks, removal, directions, bad input, bounded memory; video checkpoints; the
``conceptseg track`` command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.build import (build_video_model, load, load_video_model, save_video_checkpoint)
from conceptseg.checkpoint import CheckpointError
from conceptseg.errors import InputError
from conceptseg.inference.video import FrameResult, VideoSession
from conceptseg.inference.video import AssociationConfig

from .conftest import reference


@pytest.fixture(scope="module")
def video_model():
    return load_video_model(reference("video_model_state_dict.pt"))


@pytest.fixture(scope="module")
def video_case():
    return torch.load(reference("video_case.pt"), weights_only=True)


@pytest.fixture(scope="module")
def frames_dir():
    return reference("video_frames")


def _check(ours: FrameResult, ref: dict) -> None:
    assert ours.obj_ids.tolist() == ref["out_obj_ids"].tolist()
    assert ours.scores.tolist() == pytest.approx(ref["out_probs"].tolist(), abs=1e-6)
    assert torch.allclose(ours.boxes_xywh, ref["out_boxes_xywh"].float(), atol=1e-4)
    assert torch.equal(ours.masks, ref["out_binary_masks"])
    assert ours.frame_stats == {k: int(v) for k, v in ref["frame_stats"].items()}


# ---------------------------------------------------------------- parity


def test_official_fixture_text_prompt_and_forward_propagation(video_model, video_case, frames_dir):
    """Text "red square" on frame 0, then forward propagation over the 4 fixture frames
    (frame-folder fp16 preprocessing): same ids, probabilities, boxes and binary masks as the
    official Sam3VideoPredictor on every frame."""
    with VideoSession(video_model, frames_dir) as s:
        # the frame-folder path gives the fixture's fp16 frames bit for bit
        x = torch.stack([s.source.preprocess(t, 112) for t in range(4)])
        assert torch.equal(x, video_case["video_input_fp16"])
        first = s.add_text(video_case["prompt"], frame=0)
        _check(first, video_case["add_prompt_frame0"])
        out = list(s.propagate("forward"))
        assert [t for t, _ in out] == [0, 1, 2, 3]  # all released at the end (4 < hotstart 15)
        for t, res in out:
            _check(res, video_case["propagate_forward"][t])
        # one tracker group per frame (objects first seen on the same frame share one)
        assert [g.obj_ids for g in s.state.groups] == [[0], [1], [2], [3]]
        # frame 0 was re-seeded (frame 0 % 16 == 0): still a conditioning frame of group 0
        assert 0 in s.state.groups[0].bank.cond
        # results() keeps every released frame
        res = s.results()
        assert list(res) == [0, 1, 2, 3] and res.obj_ids == [0, 1, 2, 3]
        _check(res[2], video_case["propagate_forward"][2])


def test_boxes_in_pixels_match_the_masks(video_model, frames_dir):
    with VideoSession(video_model, frames_dir) as s:
        r = s.add_text("red square")
        ys, xs = torch.nonzero(r.masks[0], as_tuple=True)
        assert r.boxes[0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1,
                                       ys.max().item() + 1]
        assert r.masks.shape[-2:] == (96, 128) and r.size == (96, 128)


# ---------------------------------------------------------------- directions and prompts


def test_both_directions_output_each_frame_once(video_model, frames_dir):
    with VideoSession(video_model, frames_dir) as s:
        s.add_text("red square", frame=2)
        order = [t for t, _ in s.propagate("both")]
        assert order == [2, 3, 1, 0]
        assert sorted(s.results()) == [0, 1, 2, 3]
        # backward alone starts at the (last) prompted frame
        s.add_text("red square", frame=2)
        assert [t for t, _ in s.propagate("backward")] == [2, 1, 0]
        s.add_text("red square", frame=1)
        assert [t for t, _ in s.propagate("forward", max_frames=2)] == [1, 2]
        assert [t for t, _ in s.propagate("both", start=0)] == [0, 1, 2, 3]


def test_text_prompt_starts_over_and_exemplars_keep_the_text(video_model, frames_dir):
    with VideoSession(video_model, frames_dir) as s:
        s.add_text("red square")
        list(s.propagate())
        assert len(s.obj_ids) == 4
        r = s.add_text("red square")
        assert s.obj_ids == [0] and r.obj_ids.tolist() == [0] and list(s.results()) == [0]
        r = s.add_exemplars([(10, 10, 60, 50)], frame=1)
        assert s.text == "red square" and r.frame_idx == 1
        assert list(s.results()) == [1]


def test_stopping_early_keeps_held_frames_in_results(video_model, frames_dir):
    with VideoSession(video_model, frames_dir,
                      association=AssociationConfig(hotstart_delay=2, hotstart_unmatch_thresh=2,
                                                    hotstart_dup_thresh=2)) as s:
        s.add_text("red square")
        it = s.propagate()
        t, _ = next(it)  # released once 2 frames are held
        assert t == 0
        it.close()
        assert sorted(s.results()) == [0, 1]


# ---------------------------------------------------------------- clicks and removal


def test_clicks_add_and_refine_objects(video_model, frames_dir):
    with VideoSession(video_model, frames_dir) as s:
        s.add_text("red square")
        list(s.propagate())
        r = s.add_clicks(None, [(30, 40)], [1], frame=1)
        new = r.clicked_obj_id
        assert new == 4 and new in s.obj_ids
        assert s.state.assoc.obj_id_to_score[new] == 1.0
        g = s.state.groups[-1]
        assert g.obj_ids == [new] and 1 in g.bank.cond
        # refinement: clicks accumulate on (object, frame); the frame stays conditioning
        r = s.add_clicks(new, [(100, 20)], [0], frame=1)
        assert r.clicked_obj_id == new
        pts, labs = g.points[(new, 1)]
        assert pts.tolist() == [[30.0, 40.0], [100.0, 20.0]] and labs.tolist() == [1, 0]
        # refining a detector object clears its detector-added conditioning frames nearby
        g0 = s.state.groups[0]
        assert g0.inputs[0] == {0: "mask"}
        s.add_clicks(0, [(64, 48)], [1], frame=2)
        assert g0.inputs[0] == {2: "points"}
        assert sorted(g0.bank.cond) == [2] and 0 in g0.bank.non_cond
        # propagation tracks click objects too (never removed by the hotstart)
        list(s.propagate("forward", start=0))
        assert new in s.obj_ids and 0 in s.obj_ids


def test_clicks_only_session(video_model, frames_dir):
    """No concept prompt: nothing is detected, the clicked objects are tracked (never removed
    by the hotstart although no detection ever matches them)."""
    with VideoSession(video_model, frames_dir) as s:
        r = s.add_clicks(None, [(64, 48), (70, 50)], [1, 1], frame=1)
        assert r.clicked_obj_id == 0 and r.scores.tolist() in ([], [1.0])
        r = s.add_clicks(None, [(10, 10)], frame=1)
        assert r.clicked_obj_id == 1
        assert [t for t, _ in s.propagate("both")] == [1, 2, 3, 0]
        assert s.obj_ids == [0, 1] and len(s.state.groups) == 2
        assert all(set(s.results()[t].obj_ids.tolist()) <= {0, 1} for t in range(4))


def test_remove_object(video_model, frames_dir):
    with VideoSession(video_model, frames_dir) as s:
        s.add_text("red square")
        list(s.propagate())
        s.remove_object(1)
        assert 1 not in s.obj_ids and all(1 not in g.obj_ids for g in s.state.groups)
        assert 1 not in s.results().obj_ids
        # ids are never reused
        r = s.add_clicks(None, [(20, 20)], frame=0)
        assert r.clicked_obj_id == 4


def _two_object_session(model, frames):
    """A session whose detector always finds the same two objects (top / bottom half)."""
    from conceptseg.inference.video.matching import Detections

    s = VideoSession(model, _write_frames(frames))
    r = model.tracker_config.low_res_size
    masks = torch.full((2, r, r), -2.5)
    masks[0, : r // 2] = 2.5
    masks[1, r // 2:] = 2.5
    s.engine.detect = lambda state, t, feats: Detections(torch.tensor([0.9, 0.9]), masks.clone(),
                                            torch.tensor([[0, 0, 1, .5], [0, .5, 1, 1.]]))
    return s


def test_removing_one_object_of_a_group_slices_its_memory():
    """Two objects first seen on one frame share a group; removing one slices every stored
    tensor of the group's memory."""
    model = build_video_model("test", seed=0)
    frames = [np.full((40, 56, 3), 100, np.uint8) for _ in range(3)]
    with _two_object_session(model, frames) as s:
        s.add_text("thing")
        list(s.propagate())
        g = s.state.groups[0]
        assert g.obj_ids == [0, 1]
        s.remove_object(0)
        assert g.obj_ids == [1]
        for mem in list(g.bank.cond.values()) + list(g.bank.non_cond.values()):
            assert mem.obj_ptr.shape[0] == 1 and mem.maskmem.shape[0] == 1
            assert mem.pred_masks.shape[0] == 1
        assert [t for t, _ in s.propagate()] == [0, 1, 2]  # still tracks


# ---------------------------------------------------------------- bad input


def _write_frames(frames, tmp=None):
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="frames_")) if tmp is None else tmp
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"{i:05d}.png")
    return d


def test_bad_input_is_a_clear_error_and_the_session_stays_usable(video_model, frames_dir, tmp_path):
    with pytest.raises(InputError, match="not found"):
        VideoSession(video_model, tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames"):
        VideoSession(video_model, tmp_path / "empty")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(InputError):
        VideoSession(video_model, tmp_path / "broken.mp4")

    with VideoSession(video_model, frames_dir) as s:
        with pytest.raises(InputError, match="nothing to propagate"):
            s.propagate()
        s.add_text("red square")
        list(s.propagate())
        before = (list(s.obj_ids), sorted(s.results()))
        bad = [
            (lambda: s.add_text("red square", frame=4), "out of range"),
            (lambda: s.add_text("red square", frame=-1), "out of range"),
            (lambda: s.add_text("", frame=0), "empty"),
            (lambda: s.add_clicks(None, [(200, 10)], [1], frame=0), "outside"),
            (lambda: s.add_clicks(None, [(10, -1)], [1], frame=0), "outside"),
            (lambda: s.add_clicks(None, [(10, 10)], [1, 0], frame=0), "labels"),
            (lambda: s.add_clicks(None, [(10, 10)], [2], frame=0), "labels"),
            (lambda: s.add_clicks(None, [], frame=0), "N x 2"),
            (lambda: s.add_clicks(17, [(10, 10)], frame=0), "does not exist"),
            (lambda: s.add_clicks(0, [(10, 10)], frame=9), "out of range"),
            (lambda: s.remove_object(17), "does not exist"),
            (lambda: s.propagate("sideways"), "direction"),
            (lambda: s.propagate(start=4), "out of range"),
            (lambda: s.propagate(max_frames=0), "max_frames"),
            (lambda: s.add_exemplars([(500, 0, 600, 10)], frame=0), "entirely outside"),
            (lambda: s.add_exemplars([], frame=0), "at least one"),
        ]
        for call, msg in bad:
            with pytest.raises(InputError, match=msg):
                call()
        assert (list(s.obj_ids), sorted(s.results())) == before
        assert [t for t, _ in s.propagate()] == [0, 1, 2, 3]  # still usable
    with pytest.raises(InputError, match="closed"):
        s.add_text("red square")


# ---------------------------------------------------------------- bounded memory


def test_memory_stays_bounded_on_a_long_clip(tmp_path):
    """A clip much longer than the memory window: every tracker bank, the decoded-frame cache
    and the feature cache stay bounded, and the total does not grow with the video length."""
    model = build_video_model("test", seed=0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 56, 3)).astype(np.uint8) for _ in range(120)]
    cfg = AssociationConfig(hotstart_delay=4, hotstart_unmatch_thresh=2, hotstart_dup_thresh=2,
                            max_num_objects=2)
    tc = model.tracker_config
    w = max(tc.num_maskmem, tc.max_obj_ptrs)
    with _two_object_session(model, frames) as s:
        s.state.config = cfg
        s.add_text("thing")
        sizes = []
        for t, _ in s.propagate():
            assert len(s.engine.features) <= 2 and len(s.source.cached_indices) <= 2
            for g in s.state.groups:
                assert len(g.bank.non_cond) <= w + 2
                assert len(g.bank.cond) <= tc.max_cond_frames_in_attn + w + 1
                assert len(g.anchor) <= w + 2
            sizes.append(s.memory_frames())
        assert len(sizes) == 120 and len(s.results()) == 120
        # at most 2 objects (so 2 groups): a bound independent of the clip length
        per_group = (w + 2) + (tc.max_cond_frames_in_attn + w + 1) + (w + 2)
        assert max(sizes) <= 2 * per_group < len(sizes)


# ---------------------------------------------------------------- checkpoints


def test_video_checkpoint_round_trips(video_model, tmp_path):
    sd = video_model.state_dict()
    for layout, name in (("ours", "v.safetensors"), ("official", "v.pt")):
        path = save_video_checkpoint(video_model, tmp_path / name, layout)
        back = load_video_model(path)
        assert back.tracker_config == video_model.tracker_config
        assert all(torch.equal(sd[k], v) for k, v in back.state_dict().items())
    # our video file is also an image checkpoint
    det = load(tmp_path / "v.safetensors")
    assert all(torch.equal(v, video_model.detector.state_dict()[k])
               for k, v in det.state_dict().items())
    # a random model of another size carries its configs
    small = build_video_model("test", seed=1)
    save_video_checkpoint(small, tmp_path / "s.safetensors")
    back = load_video_model(tmp_path / "s.safetensors")
    assert back.config == small.config and back.tracker_config == small.tracker_config


def test_video_checkpoint_transformers_layout(video_model, tmp_path):
    from safetensors.torch import save_file

    from conceptseg.checkpoint import hf as checkpoint_hf
    from conceptseg.checkpoint import hf_tracker as tracker_hf

    sd = {f"detector_model.{k}": v
          for k, v in checkpoint_hf.official_to_hf(video_model.detector.state_dict()).items()}
    sd.update(tracker_hf.official_to_hf({**video_model.tracker.state_dict(),
                                         **video_model.neck.state_dict()}, prefix="tracker_model."))
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(tmp_path / "hf.safetensors"),
              metadata={"format": "pt"})
    back = load_video_model(tmp_path / "hf.safetensors")
    for part in ("tracker", "neck"):
        a, b = getattr(video_model, part).state_dict(), getattr(back, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    # transformers does not store the pos_embed cls slot and the unused points_* weights
    a, b = video_model.detector.state_dict(), back.detector.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k]) and "points_" not in k] == \
        ["backbone.vision_backbone.trunk.pos_embed"]


def test_video_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no tracker weights"):
        load_video_model(reference("image_model_state_dict.pt"))
    sd = torch.load(reference("video_model_state_dict.pt"), weights_only=True)
    bad = dict(sd)
    bad.pop("tracker.no_obj_ptr")
    torch.save(bad, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no_obj_ptr"):
        load_video_model(tmp_path / "missing.pt")
    bad = dict(sd)
    bad["tracker.no_obj_ptr"] = torch.zeros(1, 3)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="no_obj_ptr"):
        load_video_model(tmp_path / "shape.pt")
    bad = {k: v for k, v in sd.items() if ".sam2_convs." not in k}
    torch.save(bad, tmp_path / "neck.pt")
    with pytest.raises(CheckpointError, match="neck"):
        load_video_model(tmp_path / "neck.pt")


# ---------------------------------------------------------------- command line


def test_track_command(frames_dir, tmp_path, capsys):
    from conceptseg.cli import main

    ckpt = str(reference("video_model_state_dict.pt"))
    out, js = tmp_path / "o.mp4", tmp_path / "m.json"
    rc = main(["track", str(frames_dir), "--text", "red square", "--checkpoint", ckpt,
               "--out", str(out), "--json", str(js)])
    assert rc == 0 and out.stat().st_size > 0
    doc = json.loads(js.read_text())
    assert [f["frame"] for f in doc["frames"]] == [0, 1, 2, 3]
    assert [[o["id"] for o in f["objects"]] for f in doc["frames"]] == [[0], [1], [2], [3]]
    from conceptseg.ops.masks import rle_decode

    m = rle_decode([doc["frames"][1]["objects"][0]["rle"]])
    assert m.shape == (1, 96, 128)
    for argv, msg in ((["--frame", "9"], "out of range"),
                      (["--text", " "], "empty"),
                      (["--checkpoint", str(reference("image_model_state_dict.pt"))], "tracker")):
        args = ["track", str(frames_dir), "--text", "red square", "--checkpoint", ckpt] + argv
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err
