"""The memory bank of one group of objects tracked together, and the official rules for which
stored frames the memory attention reads.

A bank holds, per frame, what later frames need: the encoded memory map, the object pointer and
the scores used by memory selection. Frames are *conditioning* frames (prompted: clicks, box,
mask, detector re-seeding; temporal position 0) or *non-conditioning* (tracked) frames.

Which frames frame ``t`` reads (``select``, forward tracking; mirrored in reverse):

- conditioning frames: the ``max_cond_frames`` temporally closest (the closest before ``t``, the
  closest at/after ``t``, then the nearest others); they get temporal slot 0 and, if at or before
  ``t``, contribute an object pointer at offset ``t - c``;
- spatial memories from up to ``num_maskmem - 1`` recent non-conditioning frames (an unselected
  conditioning frame stands in for a missing one), slot k for the frame k-th most recent;
- object pointers from up to ``max_obj_ptrs - 1`` recent non-conditioning frames, at offsets
  1, 2, ... (the normaliser is ``min(num_frames, max_obj_ptrs) - 1``).

With memory selection (SAM2Long-style, the video default), "recent" means the recent frames whose
memory score (see :func:`memory_score`) exceeds the threshold, scanned from ``t - 1`` down to
frame 1 (frame 0 is never scanned) until ``min(num_frames, max_obj_ptrs) - 1`` are found, and
``t - 1`` is always appended. Pointer offsets are then ranks in that list (1 = most recent), not
frame distances, and the oldest listed frame gives a memory but never a pointer.

``add`` prunes what no later frame (in the bank's direction) can read, so a bank stays bounded
(at most ``max(num_maskmem, max_obj_ptrs) + 1`` tracked frames plus at most
``max_cond_frames + max(num_maskmem, max_obj_ptrs)`` past conditioning frames) on arbitrarily
long videos; pruning never changes what ``select`` returns, also when the newest frame is later
re-seeded as a conditioning frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .config import TrackerConfig


@dataclass
class FrameMemory:
    """What one frame leaves behind for B objects."""

    obj_ptr: Tensor  # B x C object pointers
    object_score_logits: Tensor  # B x 1
    maskmem: Tensor | None = None  # B x mem_dim x g x g encoded memory (None: not encoded yet)
    maskmem_pos: Tensor | None = None  # B x mem_dim x g x g its sine position encoding
    iou_score: Tensor | None = None  # B predicted IoU of the output mask
    eff_iou_score: float | None = None  # memory-selection score; None: never selectable
    pred_masks: Tensor | None = None  # B x 1 x r x r low-res output logits (video sessions)


def memory_score(object_score_logits: Tensor, iou_score: Tensor) -> float:
    """SAM2Long frame score: mean over objects of (2 sigmoid(s) - 1 if s > 0 else 0) times the
    mean predicted IoU.

    The official code multiplies a B x 1 tensor by a B tensor and averages the B x B outer
    product, which for B > 1 objects is mean(score) * mean(IoU), not mean(score * IoU); we keep
    that.
    """
    s = object_score_logits.float().flatten()
    norm = (s > 0).float() * (2 * s.sigmoid() - 1)
    return float(norm.mean() * iou_score.float().flatten().mean())


@dataclass
class MemorySelection:
    """What the memory attention reads for one frame."""

    memories: list[tuple[int, int, FrameMemory]]  # (tpos slot, frame index, frame)
    pointers: list[tuple[int, int, FrameMemory]]  # (temporal offset, frame index, frame)
    max_ptr_offset: int  # offsets are divided by this before the sine encoding

    @property
    def memory_frames(self) -> list[int]:
        return [t for _, t, _ in self.memories]

    @property
    def pointer_frames(self) -> list[int]:
        return [t for _, t, _ in self.pointers]


@dataclass
class MemoryBank:
    num_maskmem: int = 7
    max_cond_frames: int = 4  # -1: no limit
    keep_first_cond_frame: bool = False
    max_obj_ptrs: int = 16
    use_memory_selection: bool = True
    selection_threshold: float = 0.01
    num_frames: int | None = None  # video length (None: streaming, unknown)
    reverse: bool = False  # tracking direction (pruning drops frames behind it)
    cond: dict[int, FrameMemory] = field(default_factory=dict)
    non_cond: dict[int, FrameMemory] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: TrackerConfig, num_frames: int | None = None,
                    reverse: bool = False) -> "MemoryBank":
        return cls(num_maskmem=cfg.num_maskmem, max_cond_frames=cfg.max_cond_frames_in_attn,
                   keep_first_cond_frame=cfg.keep_first_cond_frame, max_obj_ptrs=cfg.max_obj_ptrs,
                   use_memory_selection=cfg.use_memory_selection,
                   selection_threshold=cfg.memory_selection_threshold, num_frames=num_frames,
                   reverse=reverse)

    def __len__(self) -> int:
        return len(self.cond) + len(self.non_cond)

    @property
    def window(self) -> int:
        """How far back (in frames) a tracked frame can still be read without selection."""
        return max(self.num_maskmem, self.max_obj_ptrs) - 1

    # -- storing ------------------------------------------------------------------------------
    def add(self, frame_idx: int, mem: FrameMemory, cond: bool = False, prune: bool = True) -> None:
        """Store a frame. A conditioning frame replaces a tracked output of the same frame. With
        ``prune`` the frames that no later frame can read are dropped (assuming the next frame
        tracked is ``frame_idx + 1``, or ``- 1`` in reverse)."""
        if cond:
            self.cond[frame_idx] = mem
            self.non_cond.pop(frame_idx, None)
        else:
            self.non_cond[frame_idx] = mem
        if prune:
            self.prune(frame_idx - 1 if self.reverse else frame_idx + 1)

    def _behind(self, t: int, ref: int) -> int:
        """Distance of frame t behind ref in the tracking direction (> 0: already passed)."""
        return t - ref if self.reverse else ref - t

    def prune(self, next_frame: int) -> None:
        """Drop the frames that no frame at or beyond ``next_frame`` can read."""
        # tracked frames
        keep: set[int] = set()
        behind = {t: self._behind(t, next_frame) for t in self.non_cond}
        if self.use_memory_selection:
            # next_frame - 1 is always read; otherwise only the most recent selectable frames
            recent = sorted((t for t, d in behind.items() if d >= 1), key=lambda t: behind[t])
            keep.update(t for t in recent if behind[t] == 1)
            selectable = [t for t in recent if self._scanned(t)
                          and self.non_cond[t].eff_iou_score is not None
                          and self.non_cond[t].eff_iou_score > self.selection_threshold]
            # one spare: re-seeding the newest frame turns it into a conditioning frame, which
            # removes it from the tracked frames and lets an older one move up
            keep.update(selectable[: self.max_obj_ptrs])
        else:
            keep.update(t for t, d in behind.items() if 1 <= d <= self.window)
        keep.update(t for t, d in behind.items() if d < 1)  # not passed yet
        for t in [t for t in self.non_cond if t not in keep]:
            del self.non_cond[t]
        # conditioning frames
        if self.max_cond_frames == -1:
            return
        past = sorted((t for t in self.cond if self._behind(t, next_frame) >= 1),
                      key=lambda t: self._behind(t, next_frame))
        # one more than can be selected: with more than max_cond_frames stored, the selection
        # (and so the order of the memory tokens) follows the distance ranking, as officially
        keep_c = set(past[: self.max_cond_frames + 1])
        keep_c.update(t for t in past if self._behind(t, next_frame) <= self.window)
        if self.keep_first_cond_frame and past:
            keep_c.add(past[-1])
        for t in past:
            if t not in keep_c:
                del self.cond[t]

    def _scanned(self, t: int) -> bool:
        """Whether memory selection's backward scan can visit frame t (never frame 0 forward)."""
        return t != 0 if not self.reverse else True

    # -- reading ------------------------------------------------------------------------------
    def select_cond(self, frame_idx: int) -> tuple[dict[int, FrameMemory], dict[int, FrameMemory]]:
        """(selected, unselected) conditioning frames for ``frame_idx``."""
        cond, m = self.cond, self.max_cond_frames
        if m == -1 or len(cond) <= m:
            return dict(cond), {}
        if m < 2:
            raise ValueError("max_cond_frames must allow at least 2 conditioning frames")
        sel: dict[int, FrameMemory] = {}
        if self.keep_first_cond_frame:
            first = min((t for t in cond if t < frame_idx), default=None)
            if first is None:
                first = max((t for t in cond if t > frame_idx), default=None)
            if first is not None:
                sel[first] = cond[first]
        before = max((t for t in cond if t < frame_idx), default=None)
        if before is not None:
            sel[before] = cond[before]
        after = min((t for t in cond if t >= frame_idx), default=None)
        if after is not None:
            sel[after] = cond[after]
        rest = sorted((t for t in cond if t not in sel), key=lambda t: abs(t - frame_idx))
        for t in rest[: m - len(sel)]:
            sel[t] = cond[t]
        return sel, {t: v for t, v in cond.items() if t not in sel}

    def selectable_frames(self, frame_idx: int) -> list[int]:
        """Memory selection's frame list for ``frame_idx``, oldest first (the official
        ``frame_filter``)."""
        if not self.reverse and frame_idx == 0:
            return []
        if self.reverse:
            if self.num_frames is None:
                raise ValueError("reverse tracking with memory selection needs num_frames")
            if frame_idx == self.num_frames - 1:
                return []
        max_num = self.max_ptr_frames
        if not self.reverse:
            candidates = sorted((t for t in self.non_cond if 0 < t < frame_idx), reverse=True)
            must = frame_idx - 1
        else:
            candidates = sorted(t for t in self.non_cond if frame_idx < t < self.num_frames)
            must = frame_idx + 1
        valid: list[int] = []
        for t in candidates:
            score = self.non_cond[t].eff_iou_score
            if score is None:
                continue
            if score > self.selection_threshold:
                valid.insert(0, t)
            if len(valid) >= max_num - 1:
                break
        if must not in valid:
            valid.append(must)
        return valid

    @property
    def max_ptr_frames(self) -> int:
        if self.num_frames is None:
            return self.max_obj_ptrs
        return min(self.num_frames, self.max_obj_ptrs)

    def select(self, frame_idx: int) -> MemorySelection:
        """The memories and object pointers frame ``frame_idx`` attends to (official order:
        conditioning frames, then tracked frames oldest to newest; pointers: conditioning frames,
        then tracked frames newest to oldest)."""
        sign = -1 if self.reverse else 1
        selected, unselected = self.select_cond(frame_idx)

        def lookup(t: int) -> FrameMemory | None:
            out = self.non_cond.get(t)
            return out if out is not None else unselected.get(t)

        memories = [(self.num_maskmem - 1, t, out) for t, out in selected.items()]
        valid = self.selectable_frames(frame_idx) if self.use_memory_selection else []
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos  # frames before the current one
            if self.use_memory_selection:
                if t_rel > len(valid):
                    continue
                prev = valid[-t_rel]
            else:
                prev = frame_idx - sign * t_rel
            out = lookup(prev)
            if out is not None:
                memories.append((self.num_maskmem - t_pos - 1, prev, out))

        max_ptrs = self.max_ptr_frames
        pointers = [((frame_idx - t) * sign, t, out) for t, out in selected.items()
                    if (t >= frame_idx if self.reverse else t <= frame_idx)]
        for t_diff in range(1, max_ptrs):
            if self.use_memory_selection:
                if t_diff >= len(valid):
                    break
                t = valid[-t_diff]
            else:
                t = frame_idx - sign * t_diff
                if t < 0 or (self.num_frames is not None and t >= self.num_frames):
                    break
            out = lookup(t)
            if out is not None:
                pointers.append((t_diff, t, out))
        return MemorySelection(memories, pointers, max(max_ptrs - 1, 1))
