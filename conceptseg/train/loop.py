"""The training loop: detection (concept segmentation) or contrastive pretraining.

Run directory layout::

    RUN/train_state.pt          everything needed to resume (model, optimizer, scheduler, step,
                                RNG states, training config, contrastive head); atomic
    RUN/model.safetensors       latest weights in our layout (load with conceptseg.build.load)
    RUN/snapshots/step_N.safetensors   optional numbered copies (--snapshot-every)
    RUN/metrics.jsonl           one JSON line per log interval / evaluation
    RUN/train_config.json       the training configuration

A batch is a pure function of the global step (see :mod:`conceptseg.train.data`), and the
checkpoint holds the RNG states, so a resumed run continues exactly where the last checkpoint
left it: on CPU its weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import Sam3Config
from ..errors import InputError
from .losses import LossWeights, SetCriterion

__all__ = ["TrainConfig", "train", "FREEZE_PRESETS", "build_optimizer", "lr_lambda"]

STATE = "train_state.pt"
WEIGHTS = "model.safetensors"

#: --freeze names -> parameter name prefixes of Sam3Detector
FREEZE_PRESETS: dict[str, tuple[str, ...]] = {
    "vision": ("backbone.vision_backbone.trunk.",),
    "neck": ("backbone.vision_backbone.convs.",),
    "text": ("backbone.language_backbone.encoder.",),
    "text-resizer": ("backbone.language_backbone.resizer.",),
    "geometry": ("geometry_encoder.",),
    "encoder": ("transformer.encoder.",),
    "decoder": ("transformer.decoder.",),
    "scoring": ("dot_prod_scoring.",),
    "masks": ("segmentation_head.",),
    "backbone": ("backbone.",),
}


@dataclass
class TrainConfig:
    out: str = "runs/train"
    stage: str = "detect"  # 'detect' | 'pretrain'
    data: str = "synthetic"  # 'synthetic' or a COCO / SA-Co JSON path
    images: str | None = None  # image folder of a COCO JSON (default: the JSON's folder)
    skip_bad: bool = False
    steps: int = 1000  # total optimizer steps (for COCO data: see epochs)
    epochs: int | None = None  # COCO data: total epochs (overrides steps)
    batch_images: int = 8
    phrases_per_image: int = 4
    lr: float = 3e-4
    backbone_lr_mult: float = 1.0  # lr multiplier of the vision trunk and the text encoder
    warmup: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    clip: float = 0.1  # max grad norm; 0 = off
    bf16: bool = False
    freeze: tuple[str, ...] = ()
    curriculum: str | None = None
    dac: bool = False  # one-to-many DAC queries (needs loss.o2m_k > 0)
    dn: bool = False  # recognition queries at jittered boxes of every instance (synthetic data)
    exemplars: float = 0.0  # share of synthetic rows prompted with an exemplar box
    stop_at: int | None = None  # end this invocation at this step (the schedule still uses steps)
    attr_aux: float = 0.0  # weight of per-token attribute classification on the ViT (synthetic)
    seed: int = 0
    checkpoint_every: int = 200
    snapshot_every: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_images: int = 48
    threads: int = 2
    workers: int = 0  # data processes rendering batches ahead (0: in the training process)
    time_limit: float | None = None  # minutes: checkpoint and stop once this much time has passed
    device: str = "cpu"
    progress: bool = True
    loss: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        loss = LossWeights.from_dict(d.pop("loss", {}))
        d["freeze"] = tuple(d.get("freeze", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}, loss=loss)


# -- small helpers ------------------------------------------------------------------------------
def _atomic_save(obj, path: Path) -> None:
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def lr_lambda(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up from 1/warmup to 1, then cosine to min_ratio at ``total``."""
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def apply_freeze(model, names) -> int:
    """Freeze the parameter groups named by FREEZE_PRESETS keys; returns #frozen tensors."""
    prefixes = []
    for n in names:
        if n not in FREEZE_PRESETS:
            raise InputError(f"--freeze: unknown part {n!r}; choose from {', '.join(FREEZE_PRESETS)}")
        prefixes += FREEZE_PRESETS[n]
    count = 0
    for name, p in model.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            count += 1
    return count


def build_optimizer(model, cfg: TrainConfig, extra: torch.nn.Module | None = None):
    """AdamW; no weight decay on biases, norms and embeddings; backbone lr multiplier."""
    backbone = ("backbone.vision_backbone.trunk.", "backbone.language_backbone.encoder.")
    groups: dict[tuple[bool, bool], list] = {}
    named = list(model.named_parameters())
    if extra is not None:
        named += [(f"extra.{n}", p) for n, p in extra.named_parameters()]
    for name, p in named:
        if not p.requires_grad:
            continue
        no_decay = (p.ndim <= 1 or "embedding" in name or "pos_embed" in name
                    or "query_embed" in name or "reference_points" in name or "presence_token." in name
                    or name.endswith("positional_embedding") or "logit_scale" in name)
        bb = name.startswith(backbone)
        groups.setdefault((no_decay, bb), []).append(p)
    param_groups = [{"params": ps, "weight_decay": 0.0 if nd else cfg.weight_decay,
                     "lr": cfg.lr * (cfg.backbone_lr_mult if bb else 1.0)}
                    for (nd, bb), ps in sorted(groups.items())]
    if not param_groups:
        raise InputError("every parameter is frozen: nothing to train")
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(0.9, 0.999))


def _load_model_config(name: str | None) -> Sam3Config | None:
    from ..config import get_config

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
    from ..build import build_model, load

    cfg = _load_model_config(config) if not isinstance(config, Sam3Config) else config
    if init:
        return load(init, config=cfg)
    if cfg is None:
        raise InputError("give --config (preset or JSON) or --init (a checkpoint)")
    return build_model(cfg, seed=seed)


def save_weights(model, path: Path, half: bool = False) -> Path:
    """Our safetensors layout; ``half`` stores float tensors as fp16 (load() casts back)."""
    from ..checkpoint import save_checkpoint

    sd = model.state_dict()
    if half:
        sd = {k: v.half() if v.dtype == torch.float32 else v for k, v in sd.items()}
    return save_checkpoint(sd, path, layout="ours", config=model.config)


def optimizer_step(loss: torch.Tensor, opt, sched, params, clip: float, step: int) -> dict:
    """Backward, optional grad-norm clipping, optimizer and scheduler step; a non-finite loss
    stops the run. Returns {"grad_norm": ...} when clipping (the norm before clipping)."""
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(f"loss is {float(loss.detach())} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    out = {}
    if clip > 0:
        out["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
    opt.step()
    sched.step()
    return out


# -- the loop ---------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def train(cfg: TrainConfig, *, model_config: str | Sam3Config | None = None, init: str | None = None,
          resume: bool = False, hooks: dict[str, Callable] | None = None, log=print) -> dict:
    """Train and return the final metrics. ``hooks["step_end"](step, metrics)`` is called after
    every optimizer step (after any checkpoint of that step); it may raise to stop the run."""
    hooks = hooks or {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, model_config, init, resume, hooks, log)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, model_config, init, resume: bool, hooks: dict, log) -> dict:
    from tqdm import tqdm

    from .data import (CocoStream, Collator, SyntheticStream, mask_resolution, parse_curriculum,
                       step_batches)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume:
        sp = out / STATE
        if sp.exists():
            try:
                state = torch.load(sp, map_location="cpu", weights_only=False)
            except Exception as e:  # a corrupt state: say so in one line
                raise InputError(f"cannot read {sp} to resume: {str(e).splitlines()[0][:200]}") from None
            saved = TrainConfig.from_dict(state["train_config"])
            for k in ("stage", "data", "batch_images", "phrases_per_image", "seed"):
                if getattr(saved, k) != getattr(cfg, k):
                    log(f"note: resuming with {k}={getattr(cfg, k)!r} (checkpoint had {getattr(saved, k)!r})")
        else:
            log(f"no checkpoint in {out}; starting a new run")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2 ** 32)
    random.seed(cfg.seed)
    if state is not None:
        model = make_model(Sam3Config.from_dict(state["model_config"]), None, cfg.seed)
        model.load_state_dict(state["model"])
    else:
        model = make_model(model_config, init, cfg.seed)
    if torch.device(cfg.device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~fp32 quality, much faster
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(cfg.device).train()
    mcfg = model.config
    if cfg.freeze:
        apply_freeze(model, cfg.freeze)

    # data
    S = mcfg.vision.image_size
    if cfg.data == "synthetic":
        stream = SyntheticStream(S, cfg.batch_images, cfg.phrases_per_image, cfg.seed,
                                 parse_curriculum(cfg.curriculum),
                                 token_grid=mcfg.vision.grid if cfg.attr_aux > 0 else None,
                                 exemplar_prob=cfg.exemplars)
    else:
        if cfg.stage == "pretrain":
            raise InputError("--stage pretrain needs --data synthetic (it uses attribute labels)")
        from .coco import CocoConceptDataset

        ds = CocoConceptDataset(cfg.data, cfg.images, S, mask_resolution(mcfg), cfg.skip_bad,
                                cfg.phrases_per_image)
        if ds.skipped:
            log(f"skipped {ds.skipped} bad entr{'y' if ds.skipped == 1 else 'ies'} of {cfg.data} "
                f"(first: {ds.skip_messages[0]})")
        stream = CocoStream(ds, cfg.batch_images, cfg.seed)
    total = cfg.steps
    if getattr(stream, "epoch_based", False) and cfg.epochs:
        total = cfg.epochs * stream.steps_per_epoch
    collate = Collator(mask_resolution(mcfg), mcfg.text.context_length)

    # stage-specific pieces
    head = None
    if cfg.stage == "pretrain":
        from .pretrain import ContrastiveHead

        head = ContrastiveHead(mcfg.vision.width, mcfg.d_model).to(cfg.device)
        if state is not None and state.get("head") is not None:
            head.load_state_dict(state["head"], strict=False)  # older states lack new heads
    elif cfg.stage != "detect":
        raise InputError(f"unknown stage {cfg.stage!r}; use detect or pretrain")
    trunk_out: list[torch.Tensor] = []
    if cfg.stage == "detect" and cfg.attr_aux > 0:
        if cfg.data != "synthetic":
            raise InputError("--attr-aux needs --data synthetic (it uses attribute labels)")
        from .pretrain import AttributeHead

        head = AttributeHead(mcfg.vision.width).to(cfg.device)
        if state is not None and state.get("head") is not None:
            head.load_state_dict(state["head"])
        # the detector's forward computes the trunk output once; keep it for the aux loss
        model.backbone.vision_backbone.trunk.register_forward_hook(
            lambda mod, inp, out: trunk_out.append(out))
    criterion = SetCriterion(cfg.loss)
    opt = build_optimizer(model, cfg, head)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, total, cfg.min_lr_ratio))
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sched.lr_lambdas = [lr_lambda(cfg.warmup, total, cfg.min_lr_ratio)] * len(opt.param_groups)
        step = int(state["step"])
        _set_rng_state(state["rng"])
        log(f"resumed from {out / STATE} at step {step}")
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def checkpoint(step_done: int) -> None:
        save_weights(model, out / WEIGHTS)
        if cfg.snapshot_every and step_done % cfg.snapshot_every == 0:
            save_weights(model, out / "snapshots" / f"step_{step_done:07d}.safetensors")
        _atomic_save({
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "step": step_done, "rng": _rng_state(),
            "train_config": cfg.to_dict(), "model_config": mcfg.to_dict(),
            "head": head.state_dict() if head is not None else None,
            "data_position": stream.describe(step_done),
        }, out / STATE)

    autocast = (torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
                if cfg.bf16 else nullcontext())
    metrics_f = open(out / "metrics.jsonl", "a")
    params = [p for g in opt.param_groups for p in g["params"]]
    acc: dict[str, float] = {}
    n_acc, t_acc = 0, 0.0
    last: dict = {}
    bar = tqdm(total=total, initial=step, desc=f"{cfg.stage} {out.name}", dynamic_ncols=True,
               disable=not cfg.progress, file=sys.stderr, mininterval=2.0)
    dac = cfg.dac and cfg.loss.o2m_k > 0
    started = time.time()
    try:
        end = total if cfg.stop_at is None else min(total, cfg.stop_at)
        batches = None
        if cfg.stage == "detect":
            batches = step_batches(stream, collate, step, end, cfg.workers,
                                   pin_memory=torch.device(cfg.device).type == "cuda")
        while step < end:
            t0 = time.time()
            if cfg.stage == "pretrain":
                from .pretrain import pretrain_step

                ds_ = stream.dataset(step)
                scenes = [ds_.scene(step * cfg.batch_images + j) for j in range(cfg.batch_images)]
                rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, step, 3]))
                with autocast:
                    loss, comps = pretrain_step(model, head, scenes, collate.tokens, rng)
                comps["loss"] = float(loss.detach())
            else:
                from .dac import train_forward

                batch = next(batches)
                dev = cfg.device
                dn_refs = None
                if cfg.dn and "dn_boxes" in batch:
                    from .dac import noisy_boxes

                    dn_refs = noisy_boxes(batch["dn_boxes"]).to(dev)
                ex = {}
                if "exemplar_boxes" in batch:
                    ex = {"boxes": batch["exemplar_boxes"].to(dev),
                          "box_padding": batch["exemplar_padding"].to(dev)}
                with autocast:
                    outputs = train_forward(model, batch["images"].to(dev), batch["tokens"].to(dev),
                                            batch["image_index"].to(dev), dac=dac, dn_refs=dn_refs,
                                            **ex)
                loss, comps = criterion(outputs, batch)
                if trunk_out:
                    aux, acc_ = head.token_loss(trunk_out.pop(), batch["tok_owner"].to(dev),
                                                batch["inst_attrs"].to(dev))
                    loss = loss + cfg.attr_aux * aux
                    comps.update(acc_)
                    trunk_out.clear()
            comps.update(optimizer_step(loss, opt, sched, params, cfg.clip, step))
            step += 1
            dt = time.time() - t0
            for k, v in comps.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            t_acc += dt
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                rec = {k: v / n_acc for k, v in acc.items()}
                rec.update(step=step, lr=opt.param_groups[0]["lr"], s_per_step=t_acc / n_acc,
                           time=time.time(), **stream.describe(step - 1))
                metrics_f.write(json.dumps(rec) + "\n")
                metrics_f.flush()
                last = rec
                show = {k: f"{rec[k]:.3g}" for k in ("loss", "cls", "presence", "pres_gap",
                                                      "dn_gap", "matched_iou", "mask_dice", "top1",
                                                      "cos_gap")
                        if k in rec}
                bar.set_postfix(show, refresh=False)
                acc, n_acc, t_acc = {}, 0, 0.0
            epoch_end = getattr(stream, "epoch_based", False) and stream.is_epoch_end(step - 1)
            out_of_time = (cfg.time_limit is not None
                           and time.time() - started >= 60 * cfg.time_limit)
            if step % cfg.checkpoint_every == 0 or step == end or epoch_end or out_of_time:
                checkpoint(step)
            if out_of_time:
                log(f"time limit of {cfg.time_limit:g} min reached at step {step}; checkpointed "
                    f"(continue with --resume)")
                break
            if cfg.eval_every and cfg.stage == "detect" and step % cfg.eval_every == 0:
                from .quick_eval import quick_eval

                ev = {"eval": quick_eval(model, cfg.eval_images, split="train"),
                      "eval_test": quick_eval(model, cfg.eval_images, split="test"), "step": step}
                st = stream.stage(step - 1) if hasattr(stream, "stage") else None
                if st is not None and (st.max_attributes, st.negative_mode) != (4, "mixed"):
                    ev["eval_stage"] = quick_eval(model, cfg.eval_images, split="train",
                                                  max_attributes=st.max_attributes,
                                                  negative_mode=st.negative_mode)
                    es = ev["eval_stage"]
                    log(f"step {step}: current stage ({st.max_attributes} attribute(s), "
                        f"{st.negative_mode} negatives): presence AUC {es['presence_auc']:.3f} "
                        f"(same phrase {es['phrase_presence_auc']:.3f}, score "
                        f"{es['phrase_score_auc']:.3f}) "
                        f"(pos {es['presence_pos']:.2f} neg {es['presence_neg']:.2f}), cgF1 "
                        f"{es['cgF1']:.1f}")
                metrics_f.write(json.dumps(ev) + "\n")
                metrics_f.flush()
                e, et = ev["eval"], ev["eval_test"]
                log(f"step {step}: presence AUC {e['presence_auc']:.3f} (same phrase across images "
                    f"{e['phrase_presence_auc']:.3f}, score {e['phrase_score_auc']:.3f}; "
                    f"pos {e['presence_pos']:.2f} "
                    f"neg {e['presence_neg']:.2f}), cgF1 {e['cgF1']:.1f}, pmF1 {e['pmF1']:.3f}, "
                    f"IL_MCC {e['IL_MCC']:.3f}, mask recall IoU {e['mask_recall_iou']:.3f}; held-out "
                    f"pairs presence AUC {et['heldout_presence_auc']:.3f}, test cgF1 {et['cgF1']:.1f}")
            if "step_end" in hooks:
                hooks["step_end"](step, comps)
    finally:
        bar.close()
        metrics_f.close()
    return {"step": step, **last}
