"""Synthetic clips and prompts for training the tracker (see :mod:`conceptseg.train.tracker`).

A batch is a pure function of the step: clip ``j`` of step ``s`` is rendered by
:func:`~conceptseg.data.synthetic_video.make_video` from ``derive_seed(seed, s * clips + j, 5)``
(or, with ``fixed_clips = n``, from index ``(s * clips + j) mod n``, for tests), and every
random choice of the step (objects, prompt kind, clicks, box jitter, corrected frame) comes from
a numpy generator seeded with ``(seed, step)``. So a resumed run sees the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.scene_sampling import SceneConfig, derive_seed
from ..data.synthetic_video import make_video
from ..ops.boxes import masks_to_boxes

__all__ = ["TrackClip", "TrackerStream", "Prompt", "sample_prompt", "sample_error_clicks",
           "mask_boxes"]

PROMPT_KINDS = ("mask", "box", "clicks")


@dataclass
class TrackClip:
    """One clip with the N objects to track (all visible in frame 0)."""

    frames: Tensor  # T x 3 x S x S float, normalised to [-1, 1] like the video preprocessing
    masks: Tensor  # N x T x S x S bool ground-truth masklets (all False where absent)
    index: int  # video index in the stream


class TrackerStream:
    """Clips of ``frames`` frames at ``image_size`` with 1 to ``max_objects`` objects each."""

    def __init__(self, image_size: int, clips: int, frames: int, max_objects: int, seed: int,
                 fixed_clips: int = 0, scene: SceneConfig | None = None):
        if clips <= 0 or frames < 2 or max_objects <= 0:
            raise ValueError("need clips >= 1, frames >= 2 and max_objects >= 1")
        self.S, self.clips, self.T, self.max_objects = image_size, clips, frames, max_objects
        self.seed, self.fixed = seed, fixed_clips
        self.scene = scene or SceneConfig()
        # objects smaller than this in frame 0 are not prompted (clicks / boxes need some area)
        self.min_pixels = max(4, image_size * image_size // 1000)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def rng(self, step: int) -> np.random.Generator:
        """The step's generator for every random choice (objects, prompts, corrections)."""
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), int(step), 7]))

    def _video(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames T x S x S x 3 uint8, masks M x T x S x S bool of the objects visible in
        frame 0); re-rendered from the next attempt seed until some object is."""
        if index in self._cache:
            return self._cache[index]
        for attempt in range(50):
            vid = make_video(derive_seed(self.seed, index, 5, attempt), self.T, self.S, self.scene)
            masks = [np.stack([m if m is not None else np.zeros(vid.frames.shape[1:3], bool)
                               for m in o.masks]) for o in vid.objects]
            masks = [m for m in masks if m[0].sum() >= self.min_pixels]
            if masks:
                break
        else:
            raise RuntimeError(f"no synthetic clip with a visible object for index {index}")
        out = (vid.frames, np.stack(masks))
        if self.fixed:
            self._cache[index] = out
        return out

    def clip(self, index: int, rng: np.random.Generator) -> TrackClip:
        frames, masks = self._video(index)
        n = int(rng.integers(1, min(self.max_objects, len(masks)) + 1))
        pick = np.sort(rng.choice(len(masks), size=n, replace=False))
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        return TrackClip((x - 0.5) / 0.5, torch.from_numpy(masks[pick]), index)

    def batch(self, step: int, rng: np.random.Generator) -> list[TrackClip]:
        out = []
        for j in range(self.clips):
            i = step * self.clips + j
            out.append(self.clip(i % self.fixed if self.fixed else i, rng))
        return out

    def describe(self, step: int) -> dict:
        return {"videos_seen": (step + 1) * self.clips}


# -- prompts ------------------------------------------------------------------------------------
@dataclass
class Prompt:
    """The frame-0 prompt of every object of a batch (one kind per step, so prompts stack)."""

    kind: str  # 'mask' | 'box' | 'clicks'
    box: Tensor | None = None  # B x 4 pixel xyxy
    points: Tensor | None = None  # B x N x 2 pixel (x, y)
    labels: Tensor | None = None  # B x N (1 positive, 0 negative)


def mask_boxes(masks: Tensor) -> Tensor:
    """B x H x W bool -> B x 4 xyxy pixel boxes (x1, y1 exclusive); zeros for empty masks."""
    boxes = masks_to_boxes(masks).cpu()  # inclusive max; zeros for empty masks
    boxes[:, 2:] += masks.flatten(1).any(1).cpu()[:, None]
    return boxes


def _pick_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A uniformly random (x, y) of a bool H x W region, None if it is empty."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return None
    k = int(rng.integers(len(xs)))
    return int(xs[k]), int(ys[k])


def sample_prompt(masks0: Tensor, rng: np.random.Generator, probs: tuple[float, float, float],
                  box_noise: float = 0.1, max_clicks: int = 3) -> Prompt:
    """A frame-0 prompt from the ground truth ``masks0`` (B x S x S bool, none empty).

    kind drawn with ``probs`` over (mask, box, clicks). Box: the mask's box, each side moved by
    N(0, box_noise x its side length), clipped to the image. Clicks: 1 to ``max_clicks``, the
    first positive inside the object, each further one positive inside it or (p = 1/2) negative
    in its box enlarged by half, outside the object.
    """
    kind = PROMPT_KINDS[int(rng.choice(3, p=np.asarray(probs) / sum(probs)))]
    B, S, _ = masks0.shape
    if kind == "mask":
        return Prompt(kind)
    boxes = mask_boxes(masks0)
    if kind == "box":
        wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        noise = torch.from_numpy(rng.normal(0.0, box_noise, (B, 4))).float() * wh
        b = (boxes + noise).clamp(0, S)
        x0, x1 = torch.minimum(b[:, 0], b[:, 2]), torch.maximum(b[:, 0], b[:, 2])
        y0, y1 = torch.minimum(b[:, 1], b[:, 3]), torch.maximum(b[:, 1], b[:, 3])
        return Prompt(kind, box=torch.stack([x0, y0, x1, y1], 1))
    n = int(rng.integers(1, max_clicks + 1))
    points, labels = torch.zeros(B, n, 2), torch.zeros(B, n, dtype=torch.int64)
    for b in range(B):
        m = masks0[b].numpy()
        x0, y0, x1, y1 = boxes[b].tolist()
        dx, dy = (x1 - x0) / 4, (y1 - y0) / 4
        around = np.zeros_like(m)
        around[max(0, int(y0 - dy)):int(y1 + dy) + 1, max(0, int(x0 - dx)):int(x1 + dx) + 1] = True
        for i in range(n):
            positive = i == 0 or rng.random() < 0.5
            xy = _pick_pixel(m if positive else around & ~m, rng)
            if xy is None:  # no background around it: a positive click instead
                positive, xy = True, _pick_pixel(m, rng)
            points[b, i] = torch.tensor(xy, dtype=torch.float32)
            labels[b, i] = int(positive)
    return Prompt(kind, points=points, labels=labels)


def sample_error_clicks(pred: Tensor, gt: Tensor,
                        rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """One corrective click per object, as SAM 2 trains: uniform in the error region of the
    prediction, positive on a missed pixel, negative on a false positive. pred / gt: B x S x S
    bool. Without an error: a positive click in the object (a negative one anywhere if the
    object is absent). Returns (points B x 1 x 2 pixel (x, y), labels B x 1)."""
    B, S, _ = gt.shape
    points, labels = torch.zeros(B, 1, 2), torch.zeros(B, 1, dtype=torch.int64)
    for b in range(B):
        p, g = pred[b].numpy(), gt[b].numpy()
        xy = _pick_pixel(p ^ g, rng)
        if xy is not None:
            positive = bool(g[xy[1], xy[0]])
        elif g.any():
            xy, positive = _pick_pixel(g, rng), True
        else:
            xy, positive = (int(rng.integers(S)), int(rng.integers(S))), False
        points[b, 0] = torch.tensor(xy, dtype=torch.float32)
        labels[b, 0] = int(positive)
    return points, labels
