"""The SAM 3 tracker: SAM prompt encoder + mask decoder, memory encoder, memory attention and the
object-pointer projections, with functional methods for each step of tracking.

Attribute names give a state dict equal to the official ``tracker.*`` keys with ``tracker.``
stripped. The tracker has no backbone: it reads the ``sam2_convs`` levels of the shared ViT
(:class:`~conceptseg.tracker.neck.TrackerNeck`) through :meth:`Tracker.prepare_features`.

Typical use (one group of B objects, forward tracking)::

    feats = tracker.prepare_features(*neck(trunk_out))       # per frame
    bank = tracker.new_bank(num_frames)
    out = tracker.track(feats, bank, 0, mask=first_masks)     # prompted frame -> conditioning
    out = tracker.track(feats_t, bank, t)                     # later frames use the memory

or step by step: :meth:`condition_on_memory` -> :meth:`predict_masks` -> :meth:`encode_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.common import MLP
from .bank import FrameMemory, MemoryBank, memory_score
from .config import TrackerConfig
from .mask_decoder import DecoderOutput, MaskDecoder
from .memory import MemoryEncoder, MemoryTransformer
from .prompt_encoder import PromptEncoder

NO_OBJ_SCORE = -1024.0  # mask logit written where the object is predicted absent


@dataclass
class TrackerFeatures:
    """One frame's tracker features for B objects (expand a B = 1 frame with :meth:`expand`)."""

    image: Tensor  # B x C x g x g top level (72 x 72), not memory-conditioned
    pos: Tensor  # B x C x g x g its sine position encoding
    high_res: tuple[Tensor, Tensor]  # conv_s0(4g level) B x C/8 x 4g x 4g, conv_s1(2g) B x C/4

    @property
    def batch(self) -> int:
        return self.image.shape[0]

    def expand(self, n: int) -> "TrackerFeatures":
        if self.batch == n:
            return self
        if self.batch != 1:
            raise ValueError(f"cannot expand features of batch {self.batch} to {n}")
        e = lambda x: x.expand(n, *x.shape[1:])  # noqa: E731
        return TrackerFeatures(e(self.image), e(self.pos),
                               (e(self.high_res[0]), e(self.high_res[1])))


@dataclass
class SamOutput:
    """SAM head outputs for B objects at the low resolution 4g (288 for the full model)."""

    multimasks: Tensor  # B x K x 4g x 4g logits (K = 3 multimask, else 1), NO_OBJ_SCORE if absent
    ious: Tensor  # B x K predicted IoU
    masks: Tensor  # B x 1 x 4g x 4g the chosen mask (highest predicted IoU)
    obj_ptr: Tensor  # B x C object pointer (no_obj_ptr when the object is absent)
    object_score_logits: Tensor  # B x 1 (> 0: object present)
    high_res_masks: Tensor | None = None  # B x 1 x S x S, only for a mask prompt: 20 m - 10
    # B x K x 4g x 4g the decoder's logits before absent objects are overwritten with
    # NO_OBJ_SCORE (training: mask losses keep a gradient when the object score is wrong);
    # None for a mask used as output
    raw_multimasks: Tensor | None = None

    @property
    def iou_score(self) -> Tensor:
        """B: predicted IoU of the best candidate (the official ``iou_score``)."""
        return self.ious.max(-1).values


def sine_1d(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """N positions -> N x dim: [sin(p / T^(2 (i//2) / (dim/2))) for i < dim/2, then cos(...)]."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)
    p = pos[:, None] / dim_t
    return torch.cat([p.sin(), p.cos()], dim=-1)


def non_overlap(masks: Tensor) -> Tensor:
    """Keep, at every pixel, only the highest-scoring object (B x 1 x H x W logits); the others
    are clamped to at most -10 there. A no-op for one object."""
    if masks.shape[0] == 1:
        return masks
    winner = masks.argmax(0, keepdim=True)
    idx = torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(winner == idx, masks, masks.clamp(max=-10.0))


class Tracker(nn.Module):
    def __init__(self, cfg: TrackerConfig):
        super().__init__()
        self.cfg = cfg
        d, m = cfg.d_model, cfg.mem_dim
        if d % m:
            raise ValueError(f"mem_dim {m} must divide d_model {d} (object pointers are split)")
        self.transformer = MemoryTransformer(cfg)
        self.maskmem_backbone = MemoryEncoder(cfg)
        self.sam_prompt_encoder = PromptEncoder(d, cfg.grid, cfg.image_size, cfg.mask_in_chans)
        self.sam_mask_decoder = MaskDecoder(
            d, depth=cfg.sam_depth, heads=cfg.sam_heads, mlp_dim=cfg.sam_mlp_dim,
            downsample=cfg.sam_attn_downsample, num_multimask=cfg.num_multimask_outputs,
            iou_depth=cfg.iou_head_depth, iou_hidden=cfg.iou_head_hidden_dim,
            dynamic_multimask=cfg.dynamic_multimask_via_stability,
            stability_delta=cfg.stability_delta, stability_thresh=cfg.stability_thresh)
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, m)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))  # in the checkpoint, unused
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        self.mask_downsample = nn.Conv2d(1, 1, 4, stride=4)  # mask prompt 4S -> S logits
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr,
                  self.no_obj_embed_spatial):
            nn.init.trunc_normal_(p, std=0.02)

    # -- features -----------------------------------------------------------------------------
    def prepare_features(self, levels: list[Tensor], pos: list[Tensor]) -> TrackerFeatures:
        """``TrackerNeck`` output (levels at 4g, 2g, g and their positions) -> features; the two
        high-resolution levels go through the mask decoder's ``conv_s0`` / ``conv_s1`` once."""
        dec = self.sam_mask_decoder
        return TrackerFeatures(levels[-1], pos[-1],
                               (dec.conv_s0(levels[0]), dec.conv_s1(levels[1])))

    def new_bank(self, num_frames: int | None = None, reverse: bool = False) -> MemoryBank:
        return MemoryBank.from_config(self.cfg, num_frames, reverse)

    def upsample_masks(self, masks: Tensor, size: int | None = None) -> Tensor:
        """Low-res logits -> size x size (default image_size), bilinear."""
        size = self.cfg.image_size if size is None else size
        return F.interpolate(masks.float(), size=(size, size), mode="bilinear",
                             align_corners=False)

    # -- memory attention ---------------------------------------------------------------------
    def no_memory(self, features: TrackerFeatures) -> Tensor:
        """Features of a frame that is not conditioned on memory (a prompted frame): the top
        level plus ``no_mem_embed``. B x C x g x g."""
        return features.image + self.no_mem_embed.view(1, -1, 1, 1)

    def memory_tokens(self, bank: MemoryBank, frame_idx: int, batch: int,
                      dtype: torch.dtype) -> tuple[Tensor, Tensor, int]:
        """(memory B x M x mem_dim, its position B x M x mem_dim, number of pointer tokens)."""
        sel = bank.select(frame_idx)
        d, m = self.cfg.d_model, self.cfg.mem_dim
        tokens, pos = [], []
        for slot, t, mem in sel.memories:
            if mem.maskmem is None:
                raise ValueError(f"frame {t} is in the memory of frame {frame_idx} but has no "
                                 "encoded memory")
            tokens.append(mem.maskmem.flatten(2).transpose(1, 2).to(dtype))
            p = mem.maskmem_pos.flatten(2).transpose(1, 2)
            pos.append(p + self.maskmem_tpos_enc[slot].view(1, 1, m))
        num_ptr = 0
        if sel.pointers:
            dev = self.no_obj_ptr.device
            offsets = torch.tensor([o for o, _, _ in sel.pointers], dtype=torch.float32, device=dev)
            tpos = self.obj_ptr_tpos_proj(sine_1d(offsets / sel.max_ptr_offset, d))  # P x m
            ptrs = torch.stack([mem.obj_ptr for _, _, mem in sel.pointers], dim=1)  # B x P x d
            split = d // m
            ptrs = ptrs.reshape(batch, -1, m)  # each pointer -> d/m consecutive tokens
            tpos = tpos.repeat_interleave(split, dim=0)
            tokens.append(ptrs.to(dtype))
            pos.append(tpos[None].expand(batch, -1, -1))
            num_ptr = ptrs.shape[1]
        return torch.cat(tokens, dim=1), torch.cat(pos, dim=1), num_ptr

    def condition_on_memory(self, features: TrackerFeatures, bank: MemoryBank,
                            frame_idx: int) -> Tensor:
        """Memory attention of frame ``frame_idx`` over what ``bank.select`` picks: returns the
        conditioned top level B x C x g x g (to feed :meth:`predict_masks` as ``pix_feat``)."""
        if not bank.cond:
            raise ValueError("the memory bank has no conditioning frame: prompt a frame first")
        memory, memory_pos, num_ptr = self.memory_tokens(bank, frame_idx, features.batch,
                                                         features.image.dtype)
        return self.transformer(features.image, features.pos, memory, memory_pos, num_ptr)

    # -- SAM heads ----------------------------------------------------------------------------
    def use_multimask(self, num_points: int) -> bool:
        c = self.cfg
        return (c.multimask_output_in_sam
                and c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num)

    def predict_masks(self, features: TrackerFeatures, pix_feat: Tensor | None = None, *,
                      points: Tensor | None = None, labels: Tensor | None = None,
                      box: Tensor | None = None, mask_input: Tensor | None = None,
                      multimask: bool | None = None) -> SamOutput:
        """The SAM interactive path.

        points: B x N x 2 pixel (x, y) in the image_size frame, labels B x N (1 positive, 0
        negative); box: B x 4 pixel xyxy (encoded as two corner points before the clicks);
        mask_input: B x 1 x H x W logits (resized to 4g, antialiased). ``pix_feat`` defaults to
        :meth:`no_memory` (a prompted frame). ``multimask`` defaults to the official rule (3
        masks for 0 or 1 points, a box counting as 2).
        """
        B = features.batch
        pix_feat = self.no_memory(features) if pix_feat is None else pix_feat
        dev = pix_feat.device
        pts, labs = [], []
        if box is not None:
            pts.append(box.reshape(B, 2, 2).float())
            labs.append(torch.tensor([2, 3], dtype=torch.int32, device=dev).expand(B, 2))
        if points is not None:
            if labels is None:
                raise ValueError("points need labels")
            pts.append(points.float())
            labs.append(labels.to(torch.int32))
        num_points = sum(p.shape[1] for p in pts)
        if pts:
            coords, lab = torch.cat(pts, 1), torch.cat(labs, 1)
            limit = self.cfg.max_points_in_prompt
            if limit > 0 and num_points > limit:  # keep the first and the last clicks
                first = limit // 2
                keep = torch.cat([torch.arange(first), torch.arange(num_points - (limit - first),
                                                                    num_points)]).to(dev)
                coords, lab = coords[:, keep], lab[:, keep]
        else:  # no clicks: one padding point
            coords = torch.zeros(B, 1, 2, device=dev)
            lab = torch.full((B, 1), -1, dtype=torch.int32, device=dev)
        if multimask is None:
            multimask = self.use_multimask(num_points)
        if mask_input is not None:
            s = self.sam_prompt_encoder.mask_input_size
            if tuple(mask_input.shape[-2:]) != (s, s):
                mask_input = F.interpolate(mask_input.float(), size=(s, s), mode="bilinear",
                                           align_corners=False, antialias=True)
        sparse, dense = self.sam_prompt_encoder(coords, lab, mask_input, B)
        dec = self.sam_mask_decoder(pix_feat, self.sam_prompt_encoder.dense_pe(), sparse, dense,
                                    features.high_res, multimask)
        return self._sam_output(dec, multimask)

    def _sam_output(self, dec: DecoderOutput, multimask: bool) -> SamOutput:
        present = dec.object_score_logits > 0  # B x 1
        multimasks = torch.where(present[..., None, None], dec.masks,
                                 torch.full_like(dec.masks, NO_OBJ_SCORE)).float()
        token = dec.tokens[:, 0]
        masks = multimasks
        if multimask:
            rows = torch.arange(multimasks.shape[0], device=multimasks.device)
            best = dec.ious.argmax(-1)
            masks = multimasks[rows, best][:, None]
            if dec.tokens.shape[1] > 1:
                token = dec.tokens[rows, best]
        lam = present.to(token.dtype)
        ptr = lam * self.obj_ptr_proj(token) + (1 - lam) * self.no_obj_ptr
        return SamOutput(multimasks, dec.ious, masks, ptr, dec.object_score_logits,
                         raw_multimasks=dec.masks)

    def mask_as_output(self, features: TrackerFeatures, mask: Tensor) -> SamOutput:
        """A mask prompt (new object, detector re-seeding) used directly as the output: logits
        20 m - 10. The SAM heads run once, on the raw features with the mask (4x downsampled by
        ``mask_downsample``) as dense prompt, only for the object pointer.

        mask: B x 1 x H x W (bool or [0, 1]); resized to input_mask_size (bilinear, antialiased)
        if needed, as the official ``add_new_mask`` does. The object score is +10 if the mask
        has any positive pixel, else -10 (then the pointer is ``no_obj_ptr``).

        Deviation: the official low-res output is the mask resized to (S // stride * 4)^2
        (328^2 for S = 1152, never used by the video model, which keeps the full mask); here it
        is resized to 4g (288^2) like every other low-res output.
        """
        s = self.cfg.input_mask_size
        m = mask.float()
        if tuple(m.shape[-2:]) != (s, s):
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        high = m * 20.0 - 10.0
        r = self.cfg.low_res_size
        low = F.interpolate(high, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        sam = self.predict_masks(features, features.image, mask_input=self.mask_downsample(m),
                                 multimask=False)
        present = (m.flatten(1) > 0).any(1, keepdim=True).to(sam.obj_ptr.dtype)
        ptr = present * sam.obj_ptr + (1 - present) * self.no_obj_ptr
        ious = torch.ones(m.shape[0], 1, device=m.device)
        return SamOutput(low, ious, low, ptr, present * 20.0 - 10.0, high)

    # -- memory encoder -----------------------------------------------------------------------
    def encode_memory(self, features: TrackerFeatures, mask_logits: Tensor,
                      object_score_logits: Tensor, is_from_points: bool) -> tuple[Tensor, Tensor]:
        """Encode a frame's output into memory: (B x mem_dim x g x g, its position encoding).

        mask_logits: B x 1 x H x W at any size (resized to mask_interpol_size, antialiased).
        Masks from clicks are binarised, others go through a sigmoid; then 20 p - 10. Objects
        with score <= 0 get ``no_obj_embed_spatial`` added.
        """
        if is_from_points:
            p = (mask_logits > 0).float()
        else:
            p = torch.sigmoid(mask_logits.float())
        p = p * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        mem, pos = self.maskmem_backbone(features.image, p)
        absent = (object_score_logits <= 0).to(mem.dtype)[..., None, None]  # B x 1 x 1 x 1
        mem = mem + absent * self.no_obj_embed_spatial[..., None, None]
        return mem, pos

    # -- one tracking step ----------------------------------------------------------------------
    def track(self, features: TrackerFeatures, bank: MemoryBank, frame_idx: int, *,
              points: Tensor | None = None, labels: Tensor | None = None,
              box: Tensor | None = None, mask: Tensor | None = None,
              mask_input: Tensor | None = None, multimask: bool | None = None,
              encode: bool = True) -> SamOutput:
        """Run one frame for the bank's B objects and store the result in ``bank``.

        With a prompt (points / box, or a ``mask`` used as output) the frame becomes a
        conditioning frame and is segmented without memory (as the official predictor does for
        new prompts and corrections); without one the frame is tracked through the memory.

        Memory (``encode``), as the official video predictor builds it: a prompted frame from
        its low-res output upsampled to image_size, objects made non-overlapping and masks
        binarised; a tracked frame from its upsampled output through a sigmoid. The video model
        instead encodes tracked frames after association (``encode=False``, then
        :meth:`encode_memory` and :meth:`store_memory`).
        """
        prompted = points is not None or box is not None or mask is not None
        features = features.expand(features.batch)
        if mask is not None:
            out = self.mask_as_output(features, mask)
        else:
            pix = (self.no_memory(features) if prompted
                   else self.condition_on_memory(features, bank, frame_idx))
            out = self.predict_masks(features, pix, points=points, labels=labels, box=box,
                                     mask_input=mask_input, multimask=multimask)
        mem = FrameMemory(out.obj_ptr, out.object_score_logits, iou_score=out.iou_score,
                          eff_iou_score=memory_score(out.object_score_logits, out.iou_score))
        if encode:
            high = self.upsample_masks(out.masks)
            if prompted:
                high = non_overlap(high)
            maskmem, pos = self.encode_memory(features, high, out.object_score_logits, prompted)
            self.attach_memory(mem, maskmem, pos)
        bank.add(frame_idx, mem, cond=prompted)
        return out

    def attach_memory(self, mem: FrameMemory, maskmem: Tensor, pos: Tensor) -> None:
        """Put an encoded memory on a frame record (bfloat16 if ``store_memory_bf16``, as the
        official predictor stores it)."""
        mem.maskmem = maskmem.to(torch.bfloat16) if self.cfg.store_memory_bf16 else maskmem
        mem.maskmem_pos = pos

    def store_memory(self, bank: MemoryBank, frame_idx: int, maskmem: Tensor, pos: Tensor) -> None:
        """(Re-)encode the memory of a frame already in ``bank``."""
        mem = bank.cond.get(frame_idx, bank.non_cond.get(frame_idx))
        if mem is None:
            raise KeyError(f"frame {frame_idx} is not in the memory bank")
        self.attach_memory(mem, maskmem, pos)
