"""Training forward with DAC one-to-many queries (SAM 3's "divide and conquer" decoder option).

During training the decoder's queries are duplicated: the first copy (with the presence token)
is the ordinary one-to-one set; the second copy skips self-attention, so its queries cannot
suppress each other, and is trained with one-to-many matching. Both copies share every weight,
so the checkpoint is unchanged and inference (first copy only) is the ordinary model. The extra
supervision makes more queries localise each object, which speeds up DETR training.

``train_forward(model, ..., dac=False)`` is exactly ``model(...)``; with ``dac=True`` the
one-to-one outputs are identical to ``model(...)`` (the o2m copy never influences them) and the
result gains ``o2m = {"aux_logits", "aux_boxes"}``.

The same self-attention-free group also carries *recognition queries* (DN-DETR style
denoising queries, ``dn_refs``): one per instance of the image, with its reference box at the
instance's (jittered) box and, as content, the mean of the fused image tokens inside that box
(so the query holds the object's features from the first step, before attention has learned to
localise). Their targets are the instance's box and
"does this instance match the phrase". This teaches the phrase-object matching of the
dot-product scorer (a bilinear query x phrase term) directly, while the ordinary queries are
still learning to localise: without it, a model trained from scratch learns where objects are
and which phrases are usually present, but not to compare the phrase with the object.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.boxes import box_cxcywh_to_xyxy


def box_pool(memory: Tensor, boxes: Tensor, hw: tuple[int, int]) -> Tensor:
    """Mean of the memory tokens (B x HW x C on an h x w grid) whose cell centres fall in each
    box (B x K x 4 cxcywh in [0, 1]; at least the cell under the box centre) -> B x K x C."""
    h, w = hw
    ys = (torch.arange(h, device=memory.device, dtype=memory.dtype) + 0.5) / h
    xs = (torch.arange(w, device=memory.device, dtype=memory.dtype) + 0.5) / w
    xyxy = box_cxcywh_to_xyxy(boxes)
    iny = (ys[None, None] >= xyxy[..., 1:2]) & (ys[None, None] <= xyxy[..., 3:4])  # B x K x h
    inx = (xs[None, None] >= xyxy[..., 0:1]) & (xs[None, None] <= xyxy[..., 2:3])  # B x K x w
    cy = (boxes[..., 1] * h).long().clamp(0, h - 1)
    cx = (boxes[..., 0] * w).long().clamp(0, w - 1)
    iny = iny | (torch.arange(h, device=memory.device)[None, None] == cy[..., None])
    inx = inx | (torch.arange(w, device=memory.device)[None, None] == cx[..., None])
    wgt = (iny[..., :, None] & inx[..., None, :]).flatten(2).to(memory.dtype)  # B x K x HW
    return torch.bmm(wgt / wgt.sum(-1, keepdim=True), memory)


def second_group(dec, memory: Tensor, hw: tuple[int, int], o2m: bool,
                 dn_refs: Tensor | None) -> tuple[Tensor, Tensor]:
    """The decoder's ``extra`` query group: a copy of the learned queries and their reference
    boxes (``o2m``) and/or recognition queries at ``dn_refs`` (B x K x 4 cxcywh in [0, 1]) whose
    content is the mean of the memory inside the box. Returns (queries, reference boxes)."""
    B = memory.shape[0]
    xs, refs = [], []
    if o2m:
        xs.append(dec.query_embed.weight[None].expand(B, -1, -1))
        refs.append(dec.reference_points.weight[None].expand(B, -1, -1).sigmoid())
    if dn_refs is not None:
        dn_refs = dn_refs.to(dec.reference_points.weight).clamp(1e-4, 1 - 1e-4)
        xs.append(box_pool(memory, dn_refs, hw))
        refs.append(dn_refs)
    return torch.cat(xs, 1), torch.cat(refs, 1)


def noisy_boxes(boxes: Tensor, center: float = 0.2, scale: float = 0.3,
                generator: torch.Generator | None = None) -> Tensor:
    """DN-DETR style jitter: centres move by up to ``center`` x the box size, sides scale by
    up to 1 +- ``scale``. boxes ... x 4 cxcywh in [0, 1]."""
    u = torch.rand(boxes.shape, generator=generator, dtype=boxes.dtype) * 2 - 1
    cx = boxes[..., 0] + u[..., 0] * center * boxes[..., 2]
    cy = boxes[..., 1] + u[..., 1] * center * boxes[..., 3]
    w = boxes[..., 2] * (1 + u[..., 2] * scale)
    h = boxes[..., 3] * (1 + u[..., 3] * scale)
    return torch.stack([cx, cy, w, h], -1).clamp(1e-3, 1 - 1e-3)


def train_forward(model, images: Tensor, tokens: Tensor, image_index: Tensor | None = None,
                  boxes: Tensor | None = None, box_labels: Tensor | None = None,
                  box_padding: Tensor | None = None, *, dac: bool = False,
                  dn_refs: Tensor | None = None) -> dict[str, Tensor]:
    """``model(...)`` plus, during training, the o2m copy (``dac``) and recognition queries at
    ``dn_refs`` (B x K x 4). The ordinary outputs are unchanged by either."""
    if not dac and dn_refs is None:
        return model(images, tokens, boxes, box_labels, box_padding, image_index)
    image = model.encode_image(images)
    if image_index is not None:
        image = image.select(image_index)
    text = model.encode_text(tokens)
    prompt, prompt_padding = model.encode_prompt(image, text, boxes, box_labels, box_padding)
    memory, memory_pos, hw = model.fuse(image, prompt, prompt_padding)
    dec = model.transformer.decoder
    Q = dec.query_embed.weight.shape[0]
    hs_all, boxes_all, presence = dec(memory, memory_pos, hw, prompt, prompt_padding,
                                      extra=second_group(dec, memory, hw, dac, dn_refs))
    hs, boxes_all, hs2, boxes2 = (hs_all[:, :, :Q], boxes_all[:, :, :Q], hs_all[:, :, Q:],
                                  boxes_all[:, :, Q:])
    logits2 = model.dot_prod_scoring(hs2, prompt, prompt_padding)
    out = model.decoder_outputs(hs, boxes_all, presence, memory, prompt, prompt_padding)
    n = Q if dac else 0  # the o2m copy comes first in the second group
    if dac:
        out["o2m"] = {"aux_logits": logits2[:, :, :n], "aux_boxes": boxes2[:, :, :n]}
    if dn_refs is not None:
        out["dn"] = {"aux_logits": logits2[:, :, n:], "aux_boxes": boxes2[:, :, n:]}
    out["pixel_embed"] = model.segmentation_head.pixel_embedding(image.levels, memory, prompt,
                                                                 prompt_padding)
    out["pred_masks"], out["semantic_seg"] = model.mask_logits(out["pixel_embed"], hs[-1])
    return out
