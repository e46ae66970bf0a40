"""Training the video tracker (``conceptseg train --stage tracker``) on the ``test`` configs."""

import json
from pathlib import Path

import pytest
import torch

from conceptseg.config import test_config as detector_test_config
from conceptseg.train.tracker import (TrackerTrainConfig, evaluate_tracker, make_video_model,
                                      train_tracker)
from conceptseg.train.tracker_data import TrackerStream

quiet = lambda *a: None  # noqa: E731


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tiny_tracker_preset_is_small_and_runs():
    from conceptseg.build import build_video_model

    model = build_video_model("tiny", seed=0)
    t = model.tracker_config
    assert t.name == "tiny" and (t.image_size, t.backbone_stride, t.vit_dim) == (224, 8, 128)
    n = sum(p.numel() for m in (model.tracker, model.neck) for p in m.parameters())
    assert n < 2_000_000, n
    with torch.no_grad():
        _, feats = model.encode_frame(torch.zeros(1, 3, 224, 224))
        bank = model.tracker.new_bank(2)
        model.tracker.track(feats, bank, 0, box=torch.tensor([[40.0, 50.0, 120.0, 140.0]]))
        out = model.tracker.track(feats, bank, 1)
    assert out.masks.shape == (1, 1, 112, 112)


def _cfg(out: Path, **kw) -> TrackerTrainConfig:
    base = dict(out=str(out), steps=4, clips=2, frames=4, max_objects=2, fixed_clips=2,
                lr=2e-3, warmup=5, min_lr_ratio=1.0, clip=1.0, checkpoint_every=2, log_every=1,
                threads=1, progress=False)
    base.update(kw)
    return TrackerTrainConfig(**base)


def test_tracker_learns_to_track_fixed_clips(tmp_path):
    """A few dozen steps on two fixed clips (mask prompts): the loss falls and the IoU of the
    tracked frames rises; the output is a full video checkpoint, the detector untouched."""
    from conceptseg.build import load, load_video_model

    cfg = _cfg(tmp_path / "run", steps=70, prompt_probs=(1.0, 0.0, 0.0), correct_prob=0.0,
               checkpoint_every=1000, log_every=10)
    init = make_video_model(None, detector_test_config(), seed=0)
    stream = TrackerStream(56, 2, 4, 8, cfg.seed, fixed_clips=2)  # all objects of both clips
    clips = stream.batch(0, stream.rng(0))
    before = evaluate_tracker(init, clips, cfg)
    res = train_tracker(cfg, model_config=detector_test_config(), log=quiet)
    assert res["step"] == 70
    model = load_video_model(tmp_path / "run" / "model.safetensors")
    after = evaluate_tracker(model, clips, cfg)
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    assert after["track_iou"] > before["track_iou"] + 0.15, (before, after)
    logs = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logs[-1]["loss"] < 0.6 * logs[0]["loss"]
    assert logs[-1]["track_iou"] > logs[0]["track_iou"] + 0.1
    assert {"focal", "dice", "iou", "obj", "obj_acc", "lr", "s_per_step"} <= logs[-1].keys()
    # the detector is frozen: its weights equal the initial ones; the image model loads too
    same = all(torch.equal(a, b) for a, b in zip(init.detector.state_dict().values(),
                                                 model.detector.state_dict().values()))
    assert same
    image_model = load(tmp_path / "run" / "model.safetensors")
    assert image_model.config == model.config


class _Stop(Exception):
    pass


def test_resume_gives_identical_weights(tmp_path):
    """All prompt kinds and a corrective click every step; stopped after step 3 (last
    checkpoint at 2) and resumed, the weights equal an uninterrupted run's."""
    from safetensors.torch import load_file

    kw = dict(prompt_probs=(1.0, 1.0, 1.0), correct_prob=1.0, attn_dropout=0.1)
    train_tracker(_cfg(tmp_path / "a", **kw), model_config="test", log=quiet)

    def stop(step, comps):
        if step == 3:
            raise _Stop
    with pytest.raises(_Stop):
        train_tracker(_cfg(tmp_path / "b", **kw), model_config="test", log=quiet,
                      hooks={"step_end": stop})
    assert torch.load(tmp_path / "b" / "train_state.pt", weights_only=False)["step"] == 2
    res = train_tracker(_cfg(tmp_path / "b", **kw), model_config="test", resume=True, log=quiet)
    assert res["step"] == 4
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_gradients_reach_memory_encoder_and_pointers(tmp_path):
    """Tracked frames back-propagate through the memories and object pointers of earlier
    frames (the memory encoder only gets gradient that way)."""
    from conceptseg.train.tracker_step import tracker_step

    model = make_video_model(None, "test", seed=0)
    model.detector.requires_grad_(False)
    model.tracker.train()
    stream = TrackerStream(56, 1, 3, 2, 0)
    rng = stream.rng(0)
    cfg = _cfg(tmp_path, prompt_probs=(0.0, 1.0, 0.0), correct_prob=0.0)
    loss, _ = tracker_step(model, stream.batch(0, rng), rng, cfg)
    loss.backward()
    t = model.tracker
    for name, mod in (("memory encoder", t.maskmem_backbone), ("pointer proj", t.obj_ptr_proj),
                      ("memory attention", t.transformer), ("neck", model.neck)):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), name
    assert all(p.grad is None for p in model.detector.parameters())


def test_cli_tracker_stage(tmp_path, capsys):
    from conceptseg.build import load_video_model
    from conceptseg.cli import main

    out = tmp_path / "cli"
    args = ["train", "--stage", "tracker", "--config", "test", "--steps", "2", "--clips", "1",
            "--frames", "3", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "trained the tracker to step 2" in capsys.readouterr().out
    assert load_video_model(out / "model.safetensors").tracker_config.name == "test"
    assert main(args + ["--resume", "--steps", "3"]) == 0
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    assert main(args + ["--data", "x.json"]) == 2
    assert main(args + ["--loss", "nope=1"]) == 2
    assert main(["train", "--stage", "tracker", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err


def test_ship_assembles_detector_and_tracker(tmp_path):
    import torch

    from conceptseg.build import build_video_model, load_video_model, save_video_checkpoint
    from conceptseg.errors import InputError
    from conceptseg.train.detect import save_weights
    from conceptseg.train.ship import assemble

    video = build_video_model("test", seed=0)
    tracker_ckpt = save_video_checkpoint(video, tmp_path / "tracker.safetensors")
    det = build_video_model("test", seed=0).detector
    with torch.no_grad():  # the detector trained on (trunk frozen): heads changed
        det.transformer.decoder.query_embed.weight.add_(1.0)
    from conceptseg.train.calibrate import apply_shifts

    apply_shifts(det, 0.5, 0.25)  # and was calibrated: the config constant must ship too
    save_weights(det, tmp_path / "det.safetensors")
    out, diff = assemble(str(tmp_path / "det.safetensors"), str(tracker_ckpt),
                         str(tmp_path / "ship.safetensors"), half=False)
    assert diff == 0
    got = load_video_model(out)
    assert torch.equal(got.detector.transformer.decoder.query_embed.weight,
                       det.transformer.decoder.query_embed.weight)
    assert got.config.score_bias == 0.25 and got.detector.dot_prod_scoring.bias == 0.25
    for k, v in video.tracker.state_dict().items():
        assert torch.equal(got.tracker.state_dict()[k], v), k
    with torch.no_grad():  # another trunk: the tracker would read features it never saw
        det.backbone.vision_backbone.trunk.patch_embed.proj.weight.add_(0.1)
    save_weights(det, tmp_path / "det2.safetensors")
    with pytest.raises(InputError, match="trunks differ"):
        assemble(str(tmp_path / "det2.safetensors"), str(tracker_ckpt), str(tmp_path / "x.safetensors"))
