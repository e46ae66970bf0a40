"""Prompt parsing shared by the image predictor, video sessions and the command line: text,
exemplar boxes with labels, clicks. Each gives one-line :class:`~conceptseg.errors.InputError`s."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import InputError

MAX_PROMPT_CHARS = 500  # the encoder sees 32 tokens; far longer text is a mistake, not a prompt
Exemplar = tuple[Sequence[float], object]  # ((x0, y0, x1, y1) pixels, label: see parse_label)
POSITIVE_WORDS = ("pos", "positive", "+")  # exemplar labels read as positive (any case)
NEGATIVE_WORDS = ("neg", "negative", "-")  # ... and as negative


def validate_text(text) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("prompt is not valid UTF-8") from None
    if not isinstance(text, str):
        raise InputError(f"prompt must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. surrogate-escaped bytes from a non-UTF-8 command line
        raise InputError("prompt is not valid UTF-8") from None
    if not text.strip():
        raise InputError("prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"prompt has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS} "
                         "(the text encoder reads 32 tokens)")
    return text


def parse_label(value, what: str = "exemplar label") -> bool:
    """An exemplar's positive flag: True/False, 1/0 (any integer or float type) or the words
    pos/neg, positive/negative, +/- (any case). Anything else is refused: a truthy string
    such as "neg" must not count as positive."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in POSITIVE_WORDS or word in NEGATIVE_WORDS:
            return word in POSITIVE_WORDS
    elif torch.is_tensor(value) and value.numel() == 1:
        return parse_label(value.item(), what)
    elif isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value == 1)
    raise InputError(f"{what} must be True/False, 1/0 or pos/neg, got {value!r}")


def clip_exemplars(exemplars: Iterable[Exemplar], width: int, height: int
                   ) -> list[tuple[tuple[float, float, float, float], int]]:
    """Pixel xyxy boxes with labels, checked and clipped to the image -> [((x0, y0, x1, y1), 1/0)].

    Each exemplar is ``((x0, y0, x1, y1), label)`` with a label read by :func:`parse_label`. A
    box partly outside the image is clipped to it; one entirely outside (nothing left after
    clipping) is an InputError, as are reversed corners and non-finite coordinates."""
    out = []
    for i, item in enumerate(exemplars):
        try:
            box, positive = item
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise InputError(f"exemplar {i} must be ((x0, y0, x1, y1), positive)") from None
        if not all(map(lambda v: v == v and abs(v) != float("inf"), (x0, y0, x1, y1))):
            raise InputError(f"exemplar {i} has a non-finite coordinate")
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"exemplar {i} ({x0:g},{y0:g},{x1:g},{y1:g}) needs x0 < x1 and y0 < y1")
        cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        if cx1 <= cx0 or cy1 <= cy0:
            raise InputError(f"exemplar {i} ({x0:g},{y0:g},{x1:g},{y1:g}) lies entirely outside "
                             f"the {width}x{height} image")
        out.append(((cx0, cy0, cx1, cy1), 1 if parse_label(positive, f"exemplar {i} label") else 0))
    return out


def validate_exemplars(exemplars: Iterable[Exemplar], width: int, height: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel xyxy boxes with labels -> (N x 4 normalised cxcywh, N labels 1/0), each box
    clipped to the image first (see :func:`clip_exemplars`)."""
    boxes, labels = [], []
    for (x0, y0, x1, y1), label in clip_exemplars(exemplars, width, height):
        boxes.append([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                      (y1 - y0) / height])
        labels.append(label)
    return torch.tensor(boxes, dtype=torch.float32).view(-1, 4), torch.tensor(labels).long()


def parse_clicks(points, labels, width: int, height: int, what: str = "image"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks in pixel (x, y) with labels 1 (positive) / 0 (negative; default all positive)
    -> (N x 2 float32, N int32), or an InputError saying what is wrong."""
    try:
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError):
        raise InputError("points must be a list of (x, y) pixel coordinates") from None
    if pts.dim() == 1 and pts.numel() == 2:
        pts = pts[None]
    if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise InputError(f"points must be N x 2 (x, y) with N >= 1, got shape {tuple(pts.shape)}")
    if not torch.isfinite(pts).all():
        raise InputError("points must be finite numbers")
    if labels is None:
        labs = torch.ones(pts.shape[0], dtype=torch.int32)
    else:
        try:
            labs = torch.as_tensor(np.asarray(labels).reshape(-1).astype(np.int64))
        except (TypeError, ValueError):
            raise InputError("labels must be 1 (positive) or 0 (negative) per point") from None
        if labs.numel() != pts.shape[0]:
            raise InputError(f"{pts.shape[0]} points but {labs.numel()} labels")
        if not bool(((labs == 0) | (labs == 1)).all()):
            raise InputError("labels must be 1 (positive) or 0 (negative)")
        labs = labs.to(torch.int32)
    for x, y in pts.tolist():
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(f"click ({x:g}, {y:g}) lies outside the {width}x{height} {what}")
    return pts, labs
