"""Propagation passes of a :class:`~conceptseg.inference.video.VideoSession`: the frame order
of a pass, pointing every memory bank in the pass's direction, the anchor (the first
``window`` frames of a pass, given back to a later pass in the other direction from the same
place), and the driver that steps frames and releases them through the hotstart buffer."""

from __future__ import annotations

from typing import Iterator

import torch

from ..video.postprocess import OutputBuffer
from .video_clicks import _FAR
from .video_results import FrameResult

__all__ = ["PropagationPasses"]


class PropagationPasses:
    """VideoSession mixin: running the passes that :meth:`VideoSession.propagate` planned."""

    def _order(self, start: int, reverse: bool, max_frames: int | None) -> range:
        n = self.num_frames if max_frames is None else max_frames
        if reverse:
            return range(start, max(-1, start - n), -1)
        return range(start, min(self.num_frames, start + n))

    def _begin_pass(self, start: int, reverse: bool) -> None:
        """Point every bank in the new direction, give back the frames around the previous
        pass's start, reset the anchors, and place click objects outside the hotstart window."""
        for g in self._groups:
            for t, (mem, cond) in g.anchor.items():
                if t not in g.bank.cond and t not in g.bank.non_cond:
                    (g.bank.cond if cond else g.bank.non_cond)[t] = mem
            g.anchor = {}
            g.bank.reverse = reverse
        self._anchor_start = start
        self._anchor_reverse = reverse
        st = self._assoc.state
        for o in self._user_ids:
            st.obj_first_frame_idx[o] = _FAR if reverse else -_FAR

    def _record_anchor(self) -> None:
        """Keep (references to) this pass's first frames, for a later pass in the other
        direction from the same place (bounded: ``window`` frames per group)."""
        s, rev = self._anchor_start, self._anchor_reverse
        for g in self._groups:
            w = g.bank.window + 1
            for store, cond in ((g.bank.cond, True), (g.bank.non_cond, False)):
                for t, mem in store.items():
                    d = s - t if rev else t - s
                    if 0 <= d <= w:
                        g.anchor[t] = (mem, cond)

    def _run(self, passes, max_frames) -> Iterator[tuple[int, FrameResult]]:
        # inference mode is entered per frame, never across a yield (it is thread-local and
        # would otherwise leak into the caller's loop body)
        for start, reverse in passes:
            order = self._order(start, reverse, max_frames)
            if len(order) == 0:
                continue
            with torch.inference_mode():
                self._begin_pass(start, reverse)
            buf = OutputBuffer(self.config.hotstart_delay, self.size)
            pending: dict[int, dict] = {}
            try:
                for i, t in enumerate(order):
                    with torch.inference_mode():
                        plan = self._step(t, reverse)
                        pending[t] = plan.record.obj_id_to_tracker_score
                        if abs(t - start) <= self._window():
                            self._record_anchor()
                        outs = buf.push(plan.record, is_last=(i == len(order) - 1))
                        released = [(o.frame_idx, self._output(o, pending.pop(o.frame_idx, {})))
                                    for o in outs]
                    yield from released
            finally:
                with torch.inference_mode():
                    for out in buf.flush():
                        self._output(out, pending.pop(out.frame_idx, {}))

    def _window(self) -> int:
        c = self.tcfg
        return max(c.num_maskmem, c.max_obj_ptrs) + 1
