"""Detector training: concept segmentation (``--stage detect``) or contrastive vision-text
pretraining (``--stage pretrain``) of a Sam3Detector, as step functions of the shared loop
(:mod:`conceptseg.train.loop`). ``model.safetensors`` of the run is the detector in our layout
(load with ``conceptseg.build.load``); ``train_state.pt`` also holds the model, the RNG states
and the auxiliary head."""

from __future__ import annotations

import json
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..build import build_model, load
from ..checkpoint import save_checkpoint
from ..config import Sam3Config, get_config
from ..data.randomize import RandomizeConfig
from ..data.scene_sampling import SceneConfig
from ..errors import InputError
from ..runtime import resolve_device
from .coco import CocoConceptDataset
from .config import TrainConfig
from .dac import noisy_boxes, train_forward
from .data import (
    CocoStream,
    Collator,
    SyntheticStream,
    mask_resolution,
    parse_curriculum,
    step_batches,
)
from .loop import Schedule, Stage, check_resumed_options, open_run, run
from .losses import SetCriterion
from .optim import apply_freeze, build_optimizer, lr_lambda, restore_optimizer
from .pretrain import AttributeHead, ContrastiveHead, pretrain_step
from .quick_eval import quick_eval

__all__ = ["TrainConfig", "train", "make_model", "load_model_config", "save_weights"]

#: options a resumed detector run cannot change (name -> why)
FIXED_ON_RESUME = {"stage": "a run trains one stage; start a new --out",
                   "freeze": "the frozen parts of a run are fixed; start a new --out"}


def load_model_config(name: str | None) -> Sam3Config | None:
    """A preset name or a config JSON path -> Sam3Config (None stays None)."""
    if not name:
        return None
    p = Path(name)
    if p.suffix == ".json" or p.is_file():
        try:
            return Sam3Config.from_dict(json.loads(p.read_text()))
        except FileNotFoundError:
            raise InputError(f"config file not found: {p}") from None
        except (ValueError, TypeError) as e:
            raise InputError(f"config {p}: {e}") from None
    return get_config(name)


def make_model(config: str | Sam3Config | None, init: str | None, seed: int):
    """Fresh model of ``config``, or weights from ``init`` (any layout)."""
    cfg = load_model_config(config) if not isinstance(config, Sam3Config) else config
    if init:
        return load(init, config=cfg)
    if cfg is None:
        raise InputError("give --config (preset or JSON) or --init (a checkpoint)")
    return build_model(cfg, seed=seed)


def save_weights(model, path: Path, half: bool = False) -> Path:
    """Our safetensors layout; ``half`` stores float tensors as fp16 (load() casts back)."""
    sd = model.state_dict()
    if half:
        sd = {k: v.half() if v.dtype == torch.float32 else v for k, v in sd.items()}
    return save_checkpoint(sd, path, layout="ours", config=model.config)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def train(cfg: TrainConfig, *, model_config: str | Sam3Config | None = None, init: str | None = None,
          resume: bool = False, overwrite: bool = False, hooks: dict[str, Callable] | None = None,
          log=print) -> dict:
    """Train and return the final metrics. ``hooks["step_end"](step, metrics)`` is called after
    every optimizer step (after any checkpoint of that step); it may raise to stop the run.
    An existing run in ``cfg.out`` needs ``resume`` (continue) or ``overwrite`` (start over)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    state = open_run(cfg.out, resume, overwrite, log)
    if state is not None:
        _check_resume(state, cfg, log)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        stage, schedule, start = _build(cfg, device, state, model_config, init, log)
        return run(stage, schedule, cfg.out, start, cfg.to_dict(), hooks, log)
    finally:
        torch.set_num_threads(threads)


def _check_resume(state: dict, cfg: TrainConfig, log) -> None:
    saved = state.get("train_config", {})
    if state.get("stage", saved.get("stage")) not in ("detect", "pretrain"):
        raise InputError(f"{Path(cfg.out) / 'train_state.pt'} is not a detector run; use "
                         "another --out or --stage tracker")
    if (saved.get("attr_aux", 0.0) > 0) != (cfg.attr_aux > 0):
        raise InputError("--resume: --attr-aux cannot be switched on or off in a run (it adds a "
                         "head to the optimizer); start a new --out")
    check_resumed_options(saved, cfg.to_dict(), FIXED_ON_RESUME, log)


def _build(cfg: TrainConfig, device: torch.device, state: dict | None, model_config, init, log):
    """The model, data, optimizer and step function of a run -> (Stage, Schedule, first step)."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2 ** 32)
    random.seed(cfg.seed)
    if state is not None:
        model = make_model(Sam3Config.from_dict(state["model_config"]), None, cfg.seed)
        model.load_state_dict(state["model"])
    else:
        model = make_model(model_config, init, cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~fp32 quality, much faster
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(device).train()
    mcfg = model.config
    if cfg.freeze:
        apply_freeze(model, cfg.freeze)
    S = mcfg.vision.image_size
    if cfg.data == "synthetic":
        stream = SyntheticStream(S, cfg.batch_images, cfg.phrases_per_image, cfg.seed,
                                 parse_curriculum(cfg.curriculum),
                                 token_grid=mcfg.vision.grid if cfg.attr_aux > 0 else None,
                                 exemplar_prob=cfg.exemplars, oov_negatives=cfg.oov_negatives,
                                 scene=SceneConfig(randomize=RandomizeConfig()) if cfg.randomize else None)
    else:
        ds = CocoConceptDataset(cfg.data, cfg.images, S, mask_resolution(mcfg), cfg.skip_bad,
                                cfg.phrases_per_image)
        if ds.skipped:
            log(f"skipped {ds.skipped} bad entr{'y' if ds.skipped == 1 else 'ies'} of {cfg.data} "
                f"(first: {ds.skip_messages[0]})")
        stream = CocoStream(ds, cfg.batch_images, cfg.seed)
    total = cfg.epochs * stream.steps_per_epoch if stream.epoch_based and cfg.epochs else cfg.steps
    schedule = Schedule(total, cfg.stop_at, cfg.checkpoint_every, cfg.snapshot_every,
                        cfg.log_every, cfg.time_limit, cfg.clip, cfg.progress)
    head = None
    if cfg.stage == "pretrain":
        head = ContrastiveHead(mcfg.vision.width, mcfg.d_model).to(device)
        if state is not None and state.get("head") is not None:
            head.load_state_dict(state["head"], strict=False)  # older states lack new heads
    elif cfg.attr_aux > 0:
        head = AttributeHead(mcfg.vision.width).to(device)
        if state is not None and state.get("head") is not None:
            head.load_state_dict(state["head"])
    opt = build_optimizer(model, cfg, head)
    schedule_fn = lr_lambda(cfg.warmup, total, cfg.min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_fn)
    start = 0
    if state is not None:
        restore_optimizer(opt, sched, state, schedule_fn)
        start = int(state["step"])
        _set_rng_state(state["rng"])
        log(f"resumed from {Path(cfg.out) / 'train_state.pt'} at step {start}")
    collate = Collator(mask_resolution(mcfg), mcfg.text.context_length)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if cfg.bf16 else nullcontext())
    end = total if cfg.stop_at is None else min(total, cfg.stop_at)
    if cfg.stage == "pretrain":
        step = _pretrain_step(cfg, model, head, stream, collate, autocast)
    else:
        batches = step_batches(stream, collate, start, end, cfg.workers,
                               pin_memory=device.type == "cuda")
        step = _detect_step(cfg, model, head, batches, autocast, device)
    return Stage(
        name=cfg.stage, step=step, opt=opt, sched=sched,
        params=[p for g in opt.param_groups for p in g["params"]],
        save_weights=lambda path: save_weights(model, path),
        state=lambda done: {"stage": cfg.stage, "model": model.state_dict(), "rng": _rng_state(),
                            "model_config": mcfg.to_dict(),
                            "head": head.state_dict() if head is not None else None,
                            "data_position": stream.describe(done)},
        describe=stream.describe,
        show=("loss", "cls", "presence", "pres_gap", "dn_gap", "matched_iou", "mask_dice", "top1",
              "cos_gap"),
        epoch_end=stream.is_epoch_end if stream.epoch_based else None,
        evaluate=(_evaluator(cfg, model, stream, log)
                  if cfg.eval_every and cfg.stage == "detect" else None)), schedule, start


def _pretrain_step(cfg: TrainConfig, model, head, stream, collate, autocast):
    def step(s: int):
        ds = stream.dataset(s)
        scenes = [ds.scene(s * cfg.batch_images + j) for j in range(cfg.batch_images)]
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, s, 3]))
        with autocast:
            loss, comps = pretrain_step(model, head, scenes, collate.tokens, rng)
        comps["loss"] = float(loss.detach())
        return loss, comps
    return step


def _detect_step(cfg: TrainConfig, model, head, batches, autocast, device):
    criterion = SetCriterion(cfg.loss)
    dac = cfg.dac and cfg.loss.o2m_k > 0
    trunk_out: list[torch.Tensor] = []
    if head is not None:  # --attr-aux: the forward computes the trunk output once; keep it
        model.backbone.vision_backbone.trunk.register_forward_hook(
            lambda mod, inp, out: trunk_out.append(out))

    def step(s: int):
        batch = next(batches)
        dn_refs = None
        if cfg.dn and "dn_boxes" in batch:
            dn_refs = noisy_boxes(batch["dn_boxes"]).to(device)
        ex = {}
        if "exemplar_boxes" in batch:
            ex = {"boxes": batch["exemplar_boxes"].to(device),
                  "box_padding": batch["exemplar_padding"].to(device)}
        with autocast:
            outputs = train_forward(model, batch["images"].to(device), batch["tokens"].to(device),
                                    batch["image_index"].to(device), dac=dac, dn_refs=dn_refs, **ex)
        loss, comps = criterion(outputs, batch)
        if trunk_out:
            aux, acc = head.token_loss(trunk_out.pop(), batch["tok_owner"].to(device),
                                       batch["inst_attrs"].to(device))
            loss = loss + cfg.attr_aux * aux
            comps.update(acc)
            trunk_out.clear()
        return loss, comps
    return step


def _evaluator(cfg: TrainConfig, model, stream, log):
    """Every ``eval_every`` steps: quick synthetic evaluation (train and test splits, and the
    current curriculum stage) -> a metrics.jsonl record, and a summary line."""
    def evaluate(step: int) -> dict | None:
        if step % cfg.eval_every:
            return None
        ev = {"eval": quick_eval(model, cfg.eval_images, split="train"),
              "eval_test": quick_eval(model, cfg.eval_images, split="test"), "step": step}
        st = stream.stage(step - 1) if hasattr(stream, "stage") else None
        if st is not None and (st.max_attributes, st.negative_mode) != (4, "mixed"):
            es = ev["eval_stage"] = quick_eval(model, cfg.eval_images, split="train",
                                               max_attributes=st.max_attributes,
                                               negative_mode=st.negative_mode)
            log(f"step {step}: current stage ({st.max_attributes} attribute(s), "
                f"{st.negative_mode} negatives): presence AUC {es['presence_auc']:.3f} "
                f"(same phrase {es['phrase_presence_auc']:.3f}, score "
                f"{es['phrase_score_auc']:.3f}) (pos {es['presence_pos']:.2f} neg "
                f"{es['presence_neg']:.2f}), cgF1 {es['cgF1']:.1f}")
        e, et = ev["eval"], ev["eval_test"]
        log(f"step {step}: presence AUC {e['presence_auc']:.3f} (same phrase across images "
            f"{e['phrase_presence_auc']:.3f}, score {e['phrase_score_auc']:.3f}; pos "
            f"{e['presence_pos']:.2f} neg {e['presence_neg']:.2f}), cgF1 {e['cgF1']:.1f}, pmF1 "
            f"{e['pmF1']:.3f}, IL_MCC {e['IL_MCC']:.3f}, mask recall IoU "
            f"{e['mask_recall_iou']:.3f}; held-out pairs presence AUC "
            f"{et['heldout_presence_auc']:.3f}, test cgF1 {et['cgF1']:.1f}")
        return ev
    return evaluate
