"""Optimizers and learning-rate schedules of every training stage: the detector's parameter
groups and ``--freeze`` presets, warm-up + cosine, one optimizer step with clipping, and restoring
an optimizer on ``--resume`` so that every changed schedule option is honoured."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import InputError

__all__ = ["FREEZE_PRESETS", "apply_freeze", "build_optimizer", "lr_lambda", "optimizer_step",
           "restore_optimizer"]

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


def build_optimizer(model, cfg, extra: torch.nn.Module | None = None) -> torch.optim.AdamW:
    """AdamW over a detector (and an ``extra`` head); no weight decay on biases, norms and
    embeddings; the vision trunk and text encoder at ``cfg.backbone_lr_mult`` x ``cfg.lr``."""
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


def restore_optimizer(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR,
                      state: dict, schedule: Callable[[int], float]) -> None:
    """Load the optimizer and scheduler of a checkpoint into ``opt`` / ``sched`` (fresh, built
    from the resumed run's options) and keep the fresh hyper-parameters: base learning rates,
    weight decay and the ``schedule`` (a changed --lr, --warmup, --steps ... is honoured from the
    next step on; unchanged options give exactly the uninterrupted run). Refuses in one line
    when the trainable parameters differ (another --freeze or --attr-aux)."""
    saved = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
    if saved != [len(g["params"]) for g in opt.param_groups]:
        raise InputError("--resume: the trainable parameters differ from the run's (another "
                         "--freeze or --attr-aux?); keep the run's options or start a new --out")
    fresh = [{k: v for k, v in g.items() if k not in ("params", "lr")} for g in opt.param_groups]
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    for g, f in zip(opt.param_groups, fresh):
        g.update(f)  # weight decay, betas and initial_lr (the base learning rate) of this run
    sched.base_lrs = [g["initial_lr"] for g in opt.param_groups]
    sched.lr_lambdas = [schedule] * len(opt.param_groups)
    for g, base in zip(opt.param_groups, sched.base_lrs):  # LambdaLR's own arithmetic
        g["lr"] = base * schedule(sched.last_epoch)
