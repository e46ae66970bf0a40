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

import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from ..data.synthetic import derive_seed
from ..errors import InputError
from .loop import STATE, WEIGHTS, _atomic_save, lr_lambda, optimizer_step
from .tracker_data import TrackerStream
from .tracker_step import TrackerTrainConfig, evaluate_tracker, tracker_step

__all__ = ["TrackerTrainConfig", "train_tracker", "make_video_model", "tracker_step",
           "evaluate_tracker", "cmd_train_tracker"]


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


def make_video_model(init: str | None, config=None, tracker_config=None, seed: int = 0):
    """A video model to train: ``init`` a video checkpoint (its tracker is trained further), an
    image checkpoint (a fresh tracker, its neck seeded from the detector's), or None (a fresh
    model of detector preset ``config``)."""
    from ..build import _tracker_config, build_video_model, load, load_video_model
    from ..checkpoint import CheckpointError
    from ..tracker.neck import TrackerNeck
    from ..tracker.tracker import Tracker
    from ..model.video_model import VideoModel
    from .loop import _load_model_config

    cfg = _load_model_config(config) if isinstance(config, str) else config
    try:
        if init is None:
            if cfg is None:
                raise InputError("give --init (a detector or video checkpoint) or --config")
            model = build_video_model(cfg, tracker_config, seed=seed)
        else:
            try:
                return load_video_model(init, config=cfg)  # has a tracker: train it further
            except CheckpointError as e:
                if "no tracker weights" not in str(e):
                    raise
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
    from ..tracker.memory import RoPEAttention

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


# -- the loop ------------------------------------------------------------------------------------
def train_tracker(cfg: TrackerTrainConfig, *, init: str | None = None, model_config=None,
                  tracker_config=None, resume: bool = False,
                  hooks: dict[str, Callable] | None = None, log=print) -> dict:
    """Train and return the last logged metrics (plus ``step``). ``hooks["step_end"](step,
    metrics)`` runs after every step (after that step's checkpoint) and may raise to stop."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, init, model_config, tracker_config, resume, hooks or {}, log)
    finally:
        torch.set_num_threads(threads)


def _train(cfg, init, model_config, tracker_config, resume, hooks, log) -> dict:
    from tqdm import tqdm

    from ..build import load_video_model, save_video_checkpoint

    if cfg.steps <= 0 or cfg.clips <= 0 or cfg.frames < 2 or cfg.max_objects <= 0:
        raise InputError("need --steps >= 1, --clips >= 1, --frames >= 2, --max-objects >= 1")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume and (out / STATE).exists():
        try:
            state = torch.load(out / STATE, map_location="cpu", weights_only=False)
        except Exception as e:
            raise InputError(f"cannot read {out / STATE} to resume: "
                             f"{str(e).splitlines()[0][:200]}") from None
        if state.get("stage") != "tracker":
            raise InputError(f"{out / STATE} is not a tracker run; use another --out")
        saved = TrackerTrainConfig.from_dict(state["train_config"])
        for k in ("clips", "frames", "max_objects", "fixed_clips", "seed"):
            if getattr(saved, k) != getattr(cfg, k):
                log(f"note: resuming with {k}={getattr(cfg, k)!r} (checkpoint had "
                    f"{getattr(saved, k)!r})")
        if not (out / WEIGHTS).exists():
            raise InputError(f"{out / WEIGHTS} is missing: cannot resume the tracker run")
        model = load_video_model(out / WEIGHTS)
        model.tracker.load_state_dict(state["tracker"])
        model.neck.load_state_dict(state["neck"])
    else:
        if resume:
            log(f"no checkpoint in {out}; starting a new run")
        model = make_video_model(init, model_config, tracker_config, cfg.seed)
    model = model.to(cfg.device)
    model.detector.eval().requires_grad_(False)
    model.tracker.train()
    model.neck.train()
    set_attention_dropout(model, cfg.attn_dropout)
    stream = TrackerStream(model.config.vision.image_size, cfg.clips, cfg.frames,
                           cfg.max_objects, cfg.seed, cfg.fixed_clips)
    opt = build_tracker_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, cfg.steps,
                                                             cfg.min_lr_ratio))
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sched.lr_lambdas = [lr_lambda(cfg.warmup, cfg.steps, cfg.min_lr_ratio)] * len(
            opt.param_groups)
        step = int(state["step"])
        log(f"resumed from {out / STATE} at step {step}")
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def checkpoint(done: int) -> None:
        save_video_checkpoint(model, out / WEIGHTS)  # first: resume reads the detector from it
        _atomic_save({"stage": "tracker", "tracker": model.tracker.state_dict(),
                      "neck": model.neck.state_dict(), "optimizer": opt.state_dict(),
                      "scheduler": sched.state_dict(), "step": done,
                      "train_config": cfg.to_dict(), "model_config": model.config.to_dict(),
                      "tracker_config": model.tracker_config.to_dict()}, out / STATE)

    params = [p for _, p in _trainable(model)]
    acc: dict[str, float] = {}
    cnt: dict[str, int] = {}
    n_acc, t_acc, last = 0, 0.0, {}
    bar = tqdm(total=cfg.steps, initial=step, desc=f"tracker {out.name}", dynamic_ncols=True,
               disable=not cfg.progress, file=sys.stderr, mininterval=2.0)
    metrics_f = open(out / "metrics.jsonl", "a")
    try:
        end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
        while step < end:
            t0 = time.time()
            torch.manual_seed(derive_seed(cfg.seed, step, 9))  # dropout: a function of the step
            rng = stream.rng(step)
            loss, comps = tracker_step(model, stream.batch(step, rng), rng, cfg)
            comps.update(optimizer_step(loss, opt, sched, params, cfg.clip, step))
            step += 1
            for k, v in comps.items():  # some keys (prompt_iou) are not in every step
                acc[k] = acc.get(k, 0.0) + v
                cnt[k] = cnt.get(k, 0) + 1
            n_acc += 1
            t_acc += time.time() - t0
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                last = {k: v / cnt[k] for k, v in acc.items()}
                last.update(step=step, lr=opt.param_groups[0]["lr"], s_per_step=t_acc / n_acc,
                            time=time.time(), **stream.describe(step - 1))
                metrics_f.write(json.dumps(last) + "\n")
                metrics_f.flush()
                bar.set_postfix({k: f"{last[k]:.3g}" for k in ("loss", "track_iou", "obj_acc")},
                                refresh=False)
                acc, cnt, n_acc, t_acc = {}, {}, 0, 0.0
            if step % cfg.checkpoint_every == 0 or step == end:
                checkpoint(step)
            if "step_end" in hooks:
                hooks["step_end"](step, comps)
    finally:
        bar.close()
        metrics_f.close()
    return {"step": step, **last}


# -- command line ---------------------------------------------------------------------------------
def cmd_train_tracker(args) -> int:
    """``conceptseg train --stage tracker`` (arguments: conceptseg/train/cli.py)."""
    if args.data != "synthetic":
        raise InputError("--stage tracker trains on synthetic clips only (leave out --data)")
    if args.bf16 or args.freeze:
        raise InputError("--bf16 and --freeze do not apply to --stage tracker")
    if not args.resume and not args.init and not args.config:
        raise InputError("give --init (a detector or video checkpoint) or --config (a preset)")
    if not 0.0 <= args.correct_prob <= 1.0:
        raise InputError("--correct-prob must be in [0, 1]")
    losses = {}
    for item in (x.strip() for x in args.loss.split(",") if x.strip()):
        k, _, v = item.partition("=")
        if k not in ("focal", "dice", "iou", "obj", "iou_loss"):
            raise InputError(f"--loss: unknown tracker loss term {k!r} (focal, dice, iou, obj, "
                             "iou_loss)")
        if k == "iou_loss":
            if v not in ("l1", "mse", "bce"):
                raise InputError("--loss iou_loss must be l1, mse or bce")
            losses[k] = v
            continue
        try:
            losses[k] = float(v)
        except ValueError:
            raise InputError(f"--loss: bad value in {item!r}") from None
    cfg = TrackerTrainConfig(
        **losses, out=args.out, steps=args.steps, stop_at=args.stop_at, clips=args.clips,
        frames=args.frames,
        max_objects=args.max_objects, correct_prob=args.correct_prob, lr=args.lr,
        warmup=args.warmup, min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
        clip=args.clip, seed=args.seed, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, threads=args.threads, device=args.device,
        progress=not args.no_progress)
    res = train_tracker(cfg, init=args.init, model_config=args.config,
                        tracker_config=args.tracker_config, resume=args.resume)
    shown = ", ".join(f"{k} {res[k]:.4g}" for k in ("loss", "track_iou", "obj_acc") if k in res)
    print(f"trained the tracker to step {res['step']}" + (f" ({shown})" if shown else "")
          + f"; video model in {cfg.out}/{WEIGHTS}")
    return 0
