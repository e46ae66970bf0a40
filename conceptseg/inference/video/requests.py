"""Checking what a caller asks of a video session (frame indices, object ids, exemplars, the
passes of a propagation) into plain values, with one-line
:class:`~conceptseg.errors.InputError`s; nothing here touches the session's state."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import InputError
from .state import SessionState

__all__ = ["DIRECTIONS", "check_frame", "check_obj", "exemplar_items", "plan_passes"]

DIRECTIONS = ("forward", "backward", "both")


def check_frame(state: SessionState, frame) -> int:
    if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
        raise InputError(f"frame index must be an integer, got {frame!r}")
    t, n = int(frame), state.num_frames
    if not 0 <= t < n:
        raise InputError(f"frame index {t} is out of range: the video has {n} frames "
                         f"(0..{n - 1})")
    return t


def check_obj(state: SessionState, obj_id) -> int:
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
        raise InputError(f"object id must be an integer, got {obj_id!r}")
    known = state.obj_ids
    if int(obj_id) not in known:
        raise InputError(f"object {int(obj_id)} does not exist (tracked objects: "
                         f"{known if known else 'none'})")
    return int(obj_id)


def _is_pair(item) -> bool:
    """An exemplar in the image API's form ``((x0, y0, x1, y1), label)``."""
    try:
        box, _ = item
        return len(box) == 4
    except (TypeError, ValueError):
        return False


def exemplar_items(boxes, labels: Sequence | None) -> list:
    """Boxes with ``labels`` (default all positive), or the image API's ``[(box, label)]`` ->
    ``[(box, label)]`` for :func:`conceptseg.inference.prompts.validate_exemplars`."""
    try:
        items = list(boxes)
    except TypeError:
        raise InputError("boxes must be a list of (x0, y0, x1, y1)") from None
    if not items:
        raise InputError("give at least one exemplar box")
    if all(_is_pair(b) for b in items):
        if labels is not None:
            raise InputError("give labels either inside the exemplars or as labels=, not both")
        return items
    labels = [True] * len(items) if labels is None else list(labels)
    if len(labels) != len(items):
        raise InputError(f"{len(items)} boxes but {len(labels)} labels")
    return list(zip(items, labels))


def plan_passes(state: SessionState, direction: str, start, max_frames
                ) -> tuple[list[tuple[int, bool]], int | None]:
    """The passes of ``propagate(direction, start, max_frames)``: ([(start, reverse)], max)."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not state.prompt_frames:
        raise InputError("nothing to propagate: add a text prompt, exemplars or clicks first")
    if start is None:
        start = (max if direction == "backward" else min)(state.prompt_frames)
    start = check_frame(state, start)
    if max_frames is not None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) \
                or max_frames < 1:
            raise InputError(f"max_frames must be a positive integer, got {max_frames!r}")
        max_frames = int(max_frames)
    passes = []
    if direction in ("forward", "both"):
        passes.append((start, False))
    if direction == "backward":
        passes.append((start, True))
    elif direction == "both" and start > 0:
        passes.append((start - 1, True))
    return passes, max_frames
