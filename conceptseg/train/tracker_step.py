"""One training step of the tracker: forward a batch of synthetic clips as at inference, and
the SAM 2 losses (see :mod:`conceptseg.train.tracker` for the loop and the recipe).

Per step, for a batch of clips (B objects in all, each visible in frame 0 of its clip):

* the frozen trunk runs once per frame under ``no_grad``; the trainable tracker neck and the
  mask decoder's high-resolution convs turn it into :class:`TrackerFeatures`;
* frame 0 is a conditioning frame prompted with the ground-truth mask, a jittered box or 1-3
  clicks (one kind per step, :func:`~conceptseg.train.tracker_data.sample_prompt`);
* frames 1..T-1 are tracked through memory attention over the memory bank exactly as at
  inference (:meth:`Tracker.condition_on_memory` -> :meth:`Tracker.predict_masks` ->
  :meth:`Tracker.encode_memory`), with gradients through the memories and object pointers of
  the earlier frames (full back-propagation through time);
* optionally one tracked frame gets a corrective click (from the error region, SAM 2 style) and
  becomes a conditioning frame, as a click correction does in a video session.

Losses per supervised frame and object (SAM 2): focal x 20 + dice on the masks (upsampled to the
image size; with multimask output only the lowest-loss mask), the predicted vs the actual IoU
(all masks), these three only where the object is visible; BCE of the object score against
"visible in this frame". Terms are averaged over objects and supervised frames.

Deviations from inference, on purpose: memory selection is off (clips are shorter than the
memory window, as in SAM 2 training) and memories stay float32 (no bfloat16 storage).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.splits import TRAIN_SEED
from ..errors import InputError
from ..tracker.bank import FrameMemory, MemoryBank, memory_score
from ..tracker.tracker import SamOutput, TrackerFeatures, non_overlap
from .losses import dice_loss, sigmoid_focal
from .tracker_data import (
    PROMPT_KINDS,
    Prompt,
    TrackClip,
    sample_error_clicks,
    sample_prompt,
)

__all__ = ["TrackerTrainConfig", "tracker_step", "evaluate_tracker", "batch_features",
           "run_frame", "frame_terms"]


@dataclass
class TrackerTrainConfig:
    """Everything a tracker run needs besides the model (saved as train_config.json)."""

    out: str = "runs/tracker"
    steps: int = 1000
    stop_at: int | None = None  # end this invocation at this step (the schedule spans steps)
    clips: int = 4  # clips per step
    frames: int = 5  # frames per clip (frame 0 prompted, the rest tracked)
    max_objects: int = 2  # objects tracked per clip (1..this, visible in frame 0)
    fixed_clips: int = 0  # > 0: cycle over this many clips (tests, overfitting checks)
    prompt_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)  # mask, box, clicks
    correct_prob: float = 0.25  # chance per step that one tracked frame gets a corrective click
    # dropout on the memory attention's attention weights (SAM 2: 0.1). 0 lets CPU attention
    # take the fused kernel: with it, a tiny step is ~25 % slower. Residual dropout stays 0.1.
    attn_dropout: float = 0.0
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    iou_loss: str = "bce"  # 'l1' (SAM 2.1), 'mse' (SAM 2) or 'bce' (soft-target BCE, see below)
    obj: float = 1.0
    lr: float = 3e-4
    warmup: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    clip: float = 0.1  # max grad norm; 0 = off
    seed: int = TRAIN_SEED
    checkpoint_every: int = 200
    snapshot_every: int = 0  # also keep snapshots/step_N.safetensors every N steps (0: off)
    log_every: int = 10
    time_limit: float | None = None  # minutes: checkpoint and stop once this much time passed
    threads: int = 2
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> None:
        """One-line errors for options that would silently do something else."""
        if self.steps <= 0 or self.clips <= 0 or self.frames < 2 or self.max_objects <= 0:
            raise InputError("need --steps >= 1, --clips >= 1, --frames >= 2, --max-objects >= 1")
        if not 0.0 <= self.correct_prob <= 1.0:
            raise InputError("--correct-prob must be in [0, 1]")
        if self.checkpoint_every <= 0 or self.log_every <= 0:
            raise InputError("--checkpoint-every and --log-every must be positive")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["prompt_probs"] = list(self.prompt_probs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrackerTrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "prompt_probs" in d:
            d["prompt_probs"] = tuple(d["prompt_probs"])
        return cls(**d)


# -- one step -----------------------------------------------------------------------------------
def batch_features(model, clips: list[TrackClip]) -> tuple[list[TrackerFeatures], Tensor]:
    """Per frame t, the tracker features of all B objects (rows follow the clips' objects), and
    ``owner`` (B: the clip of each object). The trunk runs once per frame, without gradient."""
    T = clips[0].frames.shape[0]
    dev = model.device
    frames = torch.stack([c.frames for c in clips]).flatten(0, 1).to(dev)  # (C T) x 3 x S x S
    with torch.no_grad():
        trunk = model.trunk(frames)
    f = model.tracker_features(trunk)  # batch (C T), trainable neck
    owner = torch.cat([torch.full((c.masks.shape[0],), i) for i, c in enumerate(clips)])
    out = []
    for t in range(T):
        rows = (owner * T + t).to(dev)
        out.append(TrackerFeatures(f.image[rows], f.pos[rows],
                                   (f.high_res[0][rows], f.high_res[1][rows])))
    return out, owner


def _non_overlap_by_clip(high: Tensor, owner: Tensor) -> Tensor:
    """:func:`non_overlap` within each clip's objects (rows of one clip are contiguous)."""
    parts, start = [], 0
    for n in torch.bincount(owner).tolist():
        parts.append(non_overlap(high[start:start + n]))
        start += n
    return torch.cat(parts)


def run_frame(tracker, feats: TrackerFeatures, bank: MemoryBank, t: int, owner: Tensor, *,
              points=None, labels=None, box=None, mask=None, mask_input=None) -> SamOutput:
    """:meth:`Tracker.track` for a batch of objects from several clips: non-overlap only within
    a clip, memories kept in float32 and with their gradient."""
    prompted = points is not None or box is not None or mask is not None
    if mask is not None:
        out = tracker.mask_as_output(feats, mask)
    else:
        pix = tracker.no_memory(feats) if prompted else tracker.condition_on_memory(feats, bank, t)
        out = tracker.predict_masks(feats, pix, points=points, labels=labels, box=box,
                                    mask_input=mask_input)
    high = tracker.upsample_masks(out.masks)
    if prompted:
        high = _non_overlap_by_clip(high, owner)
    maskmem, pos = tracker.encode_memory(feats, high, out.object_score_logits, prompted)
    mem = FrameMemory(out.obj_ptr, out.object_score_logits, maskmem, pos,
                      iou_score=out.iou_score.detach(),
                      eff_iou_score=memory_score(out.object_score_logits.detach(),
                                                 out.iou_score.detach()))
    bank.add(t, mem, cond=prompted)
    return out


def frame_terms(out: SamOutput, gt: Tensor, cfg: TrackerTrainConfig) -> dict[str, Tensor]:
    """Per-object terms of one frame: ``out`` for B objects (K masks of 4g x 4g), ``gt``
    B x S x S bool. Returns B-vectors: the losses focal, dice, iou (mask terms 0 where the
    object is not visible) and obj, and for the logs iou_l1, visible, chosen_iou (IoU of the
    output mask, the one inference keeps), best_iou (of the lowest-loss mask), obj_ok."""
    S = gt.shape[-1]
    visible = gt.flatten(1).any(1).float()
    logits = F.interpolate(out.raw_multimasks.float(), size=(S, S), mode="bilinear",
                           align_corners=False)  # B x K x S x S
    B, K = logits.shape[:2]
    tgt = gt[:, None].float().expand_as(logits)
    focal = sigmoid_focal(logits, tgt).flatten(2).mean(-1)  # B x K
    dice = dice_loss(logits.flatten(0, 1), tgt.flatten(0, 1)).view(B, K)
    best = (cfg.focal * focal + cfg.dice * dice).detach().argmin(1)
    rows = torch.arange(B, device=logits.device)
    with torch.no_grad():
        pred = logits > 0
        inter = (pred & (tgt > 0.5)).flatten(2).sum(-1).float()
        union = (pred | (tgt > 0.5)).flatten(2).sum(-1).float()
        actual = inter / union.clamp(min=1)
        chosen = tracker_upsample(out.masks, S)[:, 0] > 0
        c_inter = (chosen & gt).flatten(1).sum(1).float()
        c_union = (chosen | gt).flatten(1).sum(1).float()
        chosen_iou = c_inter / c_union.clamp(min=1)
    obj = F.binary_cross_entropy_with_logits(out.object_score_logits[:, 0].float(), visible,
                                             reduction="none")
    return {"focal": focal[rows, best] * visible, "dice": dice[rows, best] * visible,
            "iou": _iou_loss(out.ious.float(), actual, cfg.iou_loss).mean(1) * visible,
            "iou_l1": (out.ious.float() - actual).abs().mean(1).detach() * visible, "obj": obj,
            "visible": visible, "chosen_iou": chosen_iou, "best_iou": actual[rows, best],
            "obj_ok": ((out.object_score_logits[:, 0] > 0).float() == visible).float()}


def _iou_loss(pred: Tensor, actual: Tensor, kind: str) -> Tensor:
    """B x K predicted IoU (sigmoid outputs) vs the actual IoU. L1 / MSE act through the
    sigmoid, so a head trained from scratch saturates at 0 while every mask is still wrong and
    then recovers slowly; BCE with the IoU as soft target has the gradient p - IoU on the
    head's logit and does not saturate."""
    if kind == "l1":
        return (pred - actual).abs()
    if kind == "mse":
        return (pred - actual).pow(2)
    if kind == "bce":
        return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), actual, reduction="none")
    raise ValueError(f"unknown IoU loss {kind!r} (l1, mse or bce)")


def tracker_upsample(masks: Tensor, size: int) -> Tensor:
    return F.interpolate(masks.float(), size=(size, size), mode="bilinear", align_corners=False)


def _prompt_args(p: Prompt, masks0: Tensor, dev) -> dict:
    if p.kind == "mask":
        return {"mask": masks0[:, None].float().to(dev)}
    if p.kind == "box":
        return {"box": p.box.to(dev)}
    return {"points": p.points.to(dev), "labels": p.labels.to(dev)}


def tracker_step(model, clips: list[TrackClip], rng: np.random.Generator,
                 cfg: TrackerTrainConfig) -> tuple[Tensor, dict[str, float]]:
    """Forward one batch of clips (``clips[i].masks``: N_i x T x S x S, B = sum N_i objects)
    as described in the module docstring; returns (scalar loss, logged components)."""
    tracker, dev = model.tracker, model.device
    feats, owner = batch_features(model, clips)
    gt = torch.cat([c.masks for c in clips]).to(dev)  # B x T x S x S
    T = gt.shape[1]
    bank = tracker.new_bank(T)
    bank.use_memory_selection = False
    prompt = sample_prompt(gt[:, 0].cpu(), rng, cfg.prompt_probs)
    correct_at = int(rng.integers(1, T)) if rng.random() < cfg.correct_prob else -1
    supervised: list[dict[str, Tensor]] = []
    tracked: list[dict[str, Tensor]] = []
    out = run_frame(tracker, feats[0], bank, 0, owner, **_prompt_args(prompt, gt[:, 0], dev))
    prompt_iou = None
    if prompt.kind != "mask":  # a mask prompt is its own output: nothing to learn on frame 0
        supervised.append(frame_terms(out, gt[:, 0], cfg))
        prompt_iou = float(supervised[0]["chosen_iou"].mean())
    for t in range(1, T):
        if t == correct_at:  # tracked output, then a click correction (a conditioning frame)
            pix = tracker.condition_on_memory(feats[t], bank, t)
            first = tracker.predict_masks(feats[t], pix)
            terms = frame_terms(first, gt[:, t], cfg)
            supervised.append(terms)
            tracked.append(terms)
            S = gt.shape[-1]
            pred = (tracker_upsample(first.masks.detach(), S)[:, 0] > 0).cpu()
            pts, labs = sample_error_clicks(pred, gt[:, t].cpu(), rng)
            out = run_frame(tracker, feats[t], bank, t, owner, points=pts.to(dev),
                            labels=labs.to(dev),
                            mask_input=first.masks.detach().clamp(-32.0, 32.0))
            supervised.append(frame_terms(out, gt[:, t], cfg))
            continue
        out = run_frame(tracker, feats[t], bank, t, owner)
        terms = frame_terms(out, gt[:, t], cfg)
        supervised.append(terms)
        tracked.append(terms)
    stack = {k: torch.stack([s[k] for s in supervised]) for k in supervised[0]}  # F x B
    parts = {k: stack[k].mean() for k in ("focal", "dice", "iou", "obj")}
    loss = cfg.focal * parts["focal"] + cfg.dice * parts["dice"] + cfg.iou * parts["iou"] \
        + cfg.obj * parts["obj"]
    comps = {k: float(v.detach()) for k, v in parts.items()}
    comps["loss"] = float(loss.detach())
    tv = torch.stack([s["visible"] for s in tracked])
    ti = torch.stack([s["chosen_iou"] for s in tracked])
    comps["iou_l1"] = float(torch.stack([s["iou_l1"] for s in supervised]).mean())
    comps["track_iou"] = float((ti * tv).sum() / tv.sum().clamp(min=1))
    tb = torch.stack([s["best_iou"] for s in tracked])
    comps["best_iou"] = float((tb * tv).sum() / tv.sum().clamp(min=1))
    comps["obj_acc"] = float(torch.stack([s["obj_ok"] for s in tracked]).mean())
    comps["objects"] = float(gt.shape[0])
    if prompt_iou is not None:
        comps["prompt_iou"] = prompt_iou
    return loss, comps


@torch.no_grad()
def evaluate_tracker(model, clips: list[TrackClip], cfg: TrackerTrainConfig | None = None,
                     prompt: str = "mask") -> dict[str, float]:
    """Deterministic check: every clip prompted on frame 0 with ``prompt`` (mask, box or
    clicks), no corrections, eval mode (no dropout). Returns the step's components (loss,
    track_iou, obj_acc, ...); the modules' train / eval modes are restored."""
    cfg = dataclasses.replace(cfg or TrackerTrainConfig(), correct_prob=0.0,
                              prompt_probs=tuple(float(k == prompt) for k in PROMPT_KINDS))
    modes = (model.tracker.training, model.neck.training)
    model.tracker.eval()
    model.neck.eval()
    try:
        return tracker_step(model, clips, np.random.default_rng(0), cfg)[1]
    finally:
        model.tracker.train(modes[0])
        model.neck.train(modes[1])
