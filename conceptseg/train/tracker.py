"""Train the SAM 2 style tracker (and its neck) of a video model on synthetic clips, with the
detector, ViT trunk included, frozen: ``conceptseg train --stage tracker``. The recipe is in
conceptseg/train/TRACKER.md, one step (forward and losses) in :mod:`conceptseg.train.tracker_step`,
the data in :mod:`conceptseg.train.tracker_data`.

Run directory: ``model.safetensors`` (the whole video model, written by
:func:`~conceptseg.build.save_video_checkpoint`: detector unchanged + trained tracker; loads with
``load_video_model`` and, as an image model, with ``conceptseg.load``), ``train_state.pt``
(tracker + neck, optimizer, scheduler, step: resume), ``metrics.jsonl`` (loss components,
``track_iou`` = mean IoU of the output mask on tracked frames where the object is visible,
``obj_acc``, ...), ``train_config.json``. Checkpoints are atomic; a resumed run reproduces the
uninterrupted one (data, prompts and dropout are functions of the step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..build import (
    _tracker_config,
    build_video_model,
    load,
    load_video_model,
    save_video_checkpoint,
)
from ..data.scene_sampling import derive_seed
from ..data.splits import TRAIN_SEED
from ..errors import CheckpointError, InputError, NoTrackerError
from ..model.video_model import VideoModel
from ..runtime import resolve_device
from ..tracker.memory import RoPEAttention
from ..tracker.neck import TrackerNeck
from ..tracker.tracker import Tracker
from .detect import load_model_config
from .loop import STATE, WEIGHTS, Schedule, Stage, check_resumed_options, open_run, run
from .optim import lr_lambda, restore_optimizer
from .tracker_data import TrackerStream
from .tracker_step import TrackerTrainConfig, evaluate_tracker, tracker_step

__all__ = ["TrackerTrainConfig", "train_tracker", "make_video_model", "tracker_step",
           "evaluate_tracker"]


# -- the model ----------------------------------------------------------------------------------
def seed_neck_from_detector(model) -> int:
    """Copy the detector's FPN branches into the tracker neck's branches of the same scale where
    every tensor has the same shape (the tiny pair: 2x, 1x, 0.5x). Returns #branches copied."""
    det_scales = model.config.neck_scales
    det_convs = model.detector.backbone.vision_backbone.convs
    copied = 0
    for j, s in enumerate(model.tracker_config.neck_scales):
        if s not in det_scales:
            continue
        src = det_convs[det_scales.index(s)].state_dict()
        dst = model.neck.sam2_convs[j]
        if {k: v.shape for k, v in src.items()} == {k: v.shape
                                                   for k, v in dst.state_dict().items()}:
            dst.load_state_dict(src)
            copied += 1
    return copied


def make_video_model(init: str | None, config=None, tracker_config=None,
                     seed: int = TRAIN_SEED):
    """A video model to train: ``init`` a video checkpoint (its tracker is trained further), an
    image checkpoint (a fresh tracker, its neck seeded from the detector's), or None (a fresh
    model of detector preset ``config``)."""
    cfg = load_model_config(config) if isinstance(config, str) else config
    try:
        if init is None:
            if cfg is None:
                raise InputError("give --init (a detector or video checkpoint) or --config")
            model = build_video_model(cfg, tracker_config, seed=seed)
        else:
            try:
                return load_video_model(init, config=cfg)  # has a tracker: train it further
            except NoTrackerError:
                pass
            detector = load(init, config=cfg)
            tcfg = _tracker_config(tracker_config, detector.config)
            torch.manual_seed(seed)
            model = VideoModel(detector, Tracker(tcfg), TrackerNeck(tcfg)).eval()
    except (ValueError, TypeError) as e:  # unknown tracker preset, misfit tracker config
        if isinstance(e, InputError | CheckpointError):
            raise
        raise InputError(str(e)) from None
    seed_neck_from_detector(model)
    return model


def set_attention_dropout(model, p: float) -> None:
    """Dropout on the attention weights of the memory attention (training only)."""
    for mod in model.tracker.modules():
        if isinstance(mod, RoPEAttention):
            mod.dropout = p


def _trainable(model) -> list[tuple[str, torch.nn.Parameter]]:
    return ([(f"tracker.{n}", p) for n, p in model.tracker.named_parameters()]
            + [(f"neck.{n}", p) for n, p in model.neck.named_parameters()])


def build_tracker_optimizer(model, cfg: TrackerTrainConfig) -> torch.optim.AdamW:
    """AdamW over tracker + neck; no weight decay on biases, norms, embeddings and tokens."""
    decay, no_decay = [], []
    for name, p in _trainable(model):
        skip = p.ndim <= 1 or any(s in name for s in ("embed", "token", "tpos_enc", "no_obj"))
        (no_decay if skip else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


# -- the stage ----------------------------------------------------------------------------------
def train_tracker(cfg: TrackerTrainConfig, *, init: str | None = None, model_config=None,
                  tracker_config=None, resume: bool = False, overwrite: bool = False,
                  hooks: dict[str, Callable] | None = None, log=print) -> dict:
    """Train and return the last logged metrics (plus ``step``). ``hooks["step_end"](step,
    metrics)`` runs after every step (after that step's checkpoint) and may raise to stop.
    An existing run in ``cfg.out`` needs ``resume`` (continue) or ``overwrite`` (start over)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    state = open_run(out, resume, overwrite, log)
    if state is not None:
        if state.get("stage") != "tracker":
            raise InputError(f"{out / STATE} is not a tracker run; use another --out")
        check_resumed_options(state["train_config"], cfg.to_dict(), {}, log)
        if not (out / WEIGHTS).exists():
            raise InputError(f"{out / WEIGHTS} is missing: cannot resume the tracker run")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if state is not None:
            model = load_video_model(out / WEIGHTS)
            model.tracker.load_state_dict(state["tracker"])
            model.neck.load_state_dict(state["neck"])
        else:
            model = make_video_model(init, model_config, tracker_config, cfg.seed)
        stage, start = _stage(cfg, model.to(device), state, log)
        schedule = Schedule(cfg.steps, cfg.stop_at, cfg.checkpoint_every, cfg.snapshot_every,
                            cfg.log_every, cfg.time_limit, cfg.clip, cfg.progress)
        return run(stage, schedule, out, start, cfg.to_dict(), hooks, log)
    finally:
        torch.set_num_threads(threads)


def _stage(cfg: TrackerTrainConfig, model, state: dict | None, log) -> tuple[Stage, int]:
    """Tracker + neck trained, detector frozen; the step function of the loop."""
    model.detector.eval().requires_grad_(False)
    model.tracker.train()
    model.neck.train()
    set_attention_dropout(model, cfg.attn_dropout)
    stream = TrackerStream(model.config.vision.image_size, cfg.clips, cfg.frames,
                           cfg.max_objects, cfg.seed, cfg.fixed_clips)
    opt = build_tracker_optimizer(model, cfg)
    schedule_fn = lr_lambda(cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_fn)
    start = 0
    if state is not None:
        restore_optimizer(opt, sched, state, schedule_fn)
        start = int(state["step"])
        log(f"resumed from {Path(cfg.out) / STATE} at step {start}")

    def step(s: int):
        torch.manual_seed(derive_seed(cfg.seed, s, 9))  # dropout: a function of the step
        rng = stream.rng(s)
        return tracker_step(model, stream.batch(s, rng), rng, cfg)

    return Stage(
        name="tracker", step=step, opt=opt, sched=sched, params=[p for _, p in _trainable(model)],
        save_weights=lambda path: save_video_checkpoint(model, path),
        state=lambda done: {"stage": "tracker", "tracker": model.tracker.state_dict(),
                            "neck": model.neck.state_dict(),
                            "model_config": model.config.to_dict(),
                            "tracker_config": model.tracker_config.to_dict()},
        describe=stream.describe, show=("loss", "track_iou", "obj_acc")), start
