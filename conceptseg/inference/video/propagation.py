"""Propagation passes over a video session's :class:`~.state.SessionState`: the frame order of a
pass, pointing every memory bank in the pass's direction, the anchor (the first ``window``
frames of a pass, given back to a later pass in the other direction from the same place), and
the driver that steps frames through the engine and releases them through the hotstart buffer.

Pass rules: one pass runs at a time per state (a second iterator is refused with
:class:`~conceptseg.errors.SessionError` when it starts), and a pass belongs to the prompt it
was started under: a re-prompt, a removal or ``close()`` ends it (its next step raises
SessionError; frames it still held are dropped, they belong to the old prompt).
"""

from __future__ import annotations

from typing import Iterator

import torch

from ...errors import SessionError
from .engine import VideoEngine
from .postprocess import OutputBuffer
from .results import FrameResult
from .state import SessionState

__all__ = ["frame_order", "run_passes"]


def frame_order(num_frames: int, start: int, reverse: bool, max_frames: int | None) -> range:
    n = num_frames if max_frames is None else max_frames
    if reverse:
        return range(start, max(-1, start - n), -1)
    return range(start, min(num_frames, start + n))


def _begin_pass(state: SessionState, start: int, reverse: bool) -> None:
    """Point every bank in the new direction, give back the frames around the previous
    pass's start, reset the anchors, and place click objects outside the hotstart window."""
    for g in state.groups:
        for t, (mem, cond) in g.anchor.items():
            if t not in g.bank.cond and t not in g.bank.non_cond:
                (g.bank.cond if cond else g.bank.non_cond)[t] = mem
        g.anchor = {}
        g.bank.reverse = reverse
    state.anchor_start = start
    state.anchor_reverse = reverse
    for c in state.concepts:
        c.assoc.place_user_objects([o for o in state.user_ids if o in c.assoc.obj_ids], reverse)


def _record_anchor(state: SessionState) -> None:
    """Keep (references to) this pass's first frames, for a later pass in the other
    direction from the same place (bounded: ``window`` frames per group)."""
    s, rev = state.anchor_start, state.anchor_reverse
    for g in state.groups:
        w = g.bank.window + 1
        for store, cond in ((g.bank.cond, True), (g.bank.non_cond, False)):
            for t, mem in store.items():
                d = s - t if rev else t - s
                if 0 <= d <= w:
                    g.anchor[t] = (mem, cond)


def _check(state: SessionState, generation: int) -> None:
    if state.generation != generation:
        raise SessionError(f"this propagate() pass has ended: {state.ended_by}; "
                           "start a new propagate()")


def run_passes(engine: VideoEngine, state: SessionState, passes: list[tuple[int, bool]],
               max_frames: int | None, generation: int) -> Iterator[tuple[int, FrameResult]]:
    """Run ``passes`` ((start, reverse) each) started under ``generation``, yielding
    ``(frame_idx, FrameResult)`` as frames are released."""
    _check(state, generation)
    if state.running_pass is not None:
        raise SessionError("another propagate() pass is running on this session: finish it "
                           "(or close its iterator) before starting a new one")
    pass_id = state.next_pass
    state.next_pass += 1
    state.running_pass = pass_id
    c = engine.tcfg
    window = max(c.num_maskmem, c.max_obj_ptrs) + 1
    try:
        # inference mode is entered per frame, never across a yield (it is thread-local and
        # would otherwise leak into the caller's loop body)
        for start, reverse in passes:
            order = frame_order(state.num_frames, start, reverse, max_frames)
            if len(order) == 0:
                continue
            with torch.inference_mode():
                _begin_pass(state, start, reverse)
            buf = OutputBuffer(state.config.hotstart_delay, state.size)
            pending: dict[int, dict] = {}
            try:
                for i, t in enumerate(order):
                    _check(state, generation)
                    with torch.inference_mode():
                        plan = engine.step(state, t, reverse)
                        pending[t] = plan.record.obj_id_to_tracker_score
                        if abs(t - start) <= window:
                            _record_anchor(state)
                        outs = buf.push(plan.record, is_last=(i == len(order) - 1))
                        released = [(o.frame_idx, state.release(o, pending.pop(o.frame_idx, {})))
                                    for o in outs]
                    for item in released:
                        _check(state, generation)
                        yield item
            finally:
                if state.generation == generation:  # held frames of a pass that ended are dropped
                    with torch.inference_mode():
                        for out in buf.flush():
                            state.release(out, pending.pop(out.frame_idx, {}))
    finally:
        if state.running_pass == pass_id:
            state.running_pass = None
