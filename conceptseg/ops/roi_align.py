"""RoIAlign in pure PyTorch (Caffe2 / Detectron semantics, as in ``torchvision.ops.roi_align``).

Implementation note
-------------------
Bilinear interpolation weights are a product of a y-factor and an x-factor, and the
"sample is outside the image" test (``y < -1 or y > H or x < -1 or x > W``) is also a
product of a y-test and an x-test.  The average over the ``grid_h * grid_w`` samples of a
bin is therefore separable::

    out[k, c, ph, pw] = (1 / count_k) * sum_{h, w} Ay[k, ph, h] * F[b_k, c, h, w] * Ax[k, pw, w]

where ``Ay[k, ph, :]`` is the sum over the ``grid_h`` sample rows of bin ``ph`` of their
(validity-masked) interpolation weights over the ``H`` feature rows (likewise ``Ax``).
``Ay``/``Ax`` are built fully vectorised: the per-ROI adaptive sample count is padded to
the maximum over ROIs and the padded samples are masked out.  The pooled output is then
two batched matmuls per image.  No Python loop runs over bins or samples; the only loop
is over the images of the batch.  The result is differentiable w.r.t. ``features``
(no gradient flows to ``boxes``, as in torchvision).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = ["roi_align", "convert_boxes_to_roi_format"]


def convert_boxes_to_roi_format(boxes: Union[Tensor, Sequence[Tensor]]) -> Tensor:
    """Convert ROI boxes to a single ``(K, 5)`` tensor ``[batch_idx, x1, y1, x2, y2]``.

    Args:
        boxes: either a ``(K, 5)`` tensor whose first column is the batch index, or a
            list of ``N`` tensors of shape ``(K_i, 4)`` (xyxy), one per image.
    Returns:
        ``(K, 5)`` tensor, ``K = sum K_i``.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"Tensor boxes must have shape (K, 5), got {tuple(boxes.shape)}")
        return boxes
    boxes = list(boxes)
    if len(boxes) == 0:
        raise ValueError("boxes list must contain one tensor per image")
    for b in boxes:
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"each per-image box tensor must be (K_i, 4), got {tuple(b.shape)}")
    cat = torch.cat(boxes, dim=0)
    idx = torch.cat(
        [torch.full((b.shape[0], 1), i, dtype=cat.dtype, device=cat.device) for i, b in enumerate(boxes)],
        dim=0,
    )
    return torch.cat([idx, cat], dim=1)


def _axis_weights(start: Tensor, bin_size: Tensor, grid: Tensor, n_out: int, size: int) -> Tensor:
    """Summed bilinear weights of all samples of each bin along one axis.

    Args:
        start: ``(K,)`` ROI start coordinate (already scaled / offset).
        bin_size: ``(K,)`` size of one output bin.
        grid: ``(K,)`` int64 number of samples per bin along this axis (may be 0).
        n_out: number of output bins along this axis.
        size: feature-map extent along this axis (``H`` or ``W``).
    Returns:
        ``(K, n_out, size)`` tensor ``A`` with ``A[k, p, i]`` = sum over the samples of
        bin ``p`` of the weight feature row/column ``i`` receives.
    """
    k = start.shape[0]
    dtype, device = start.dtype, start.device
    g_max = max(int(grid.max().item()) if k > 0 else 1, 1)
    p = torch.arange(n_out, dtype=dtype, device=device).view(1, n_out, 1)
    it = torch.arange(g_max, device=device).view(1, 1, g_max)
    grid_f = grid.clamp(min=1).to(dtype).view(k, 1, 1)
    bs = bin_size.view(k, 1, 1)
    # Same operation order as the reference kernel: start + p*bin + ((i + .5) * bin) / grid.
    coord = start.view(k, 1, 1) + p * bs + ((it.to(dtype) + 0.5) * bs) / grid_f  # (K, n_out, G)
    valid = (it < grid.view(k, 1, 1)) & (coord >= -1.0) & (coord <= float(size))
    coord = coord.clamp(min=0.0)
    low = coord.floor().to(torch.int64)
    over = low >= size - 1
    low = torch.where(over, torch.full_like(low, size - 1), low)
    high = torch.where(over, low, low + 1)
    coord = torch.where(over, low.to(dtype), coord)
    frac = coord - low.to(dtype)
    vmask = valid.to(dtype)
    w_high = frac * vmask
    w_low = (1.0 - frac) * vmask
    # Invalid samples may carry out-of-range indices; point them at 0 (weight is 0 anyway).
    low = torch.where(valid, low, torch.zeros_like(low))
    high = torch.where(valid, high, torch.zeros_like(high))
    out = torch.zeros(k, n_out, size, dtype=dtype, device=device)
    out.scatter_add_(2, low, w_low)
    out.scatter_add_(2, high, w_high)
    return out


def roi_align(
    features: Tensor,
    boxes: Union[Tensor, Sequence[Tensor]],
    output_size: Union[int, Sequence[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with the exact semantics of ``torchvision.ops.roi_align``.

    Args:
        features: ``(N, C, H, W)`` feature map.
        boxes: ``(K, 5)`` tensor ``[batch_idx, x1, y1, x2, y2]`` or a list of ``N``
            tensors ``(K_i, 4)`` in xyxy input-image coordinates.
        output_size: ``oh`` or ``(oh, ow)``.
        spatial_scale: factor mapping box coordinates to feature coordinates.
        sampling_ratio: samples per bin along each axis; ``<= 0`` means adaptive
            ``ceil(roi_h / oh)`` (resp. ``ceil(roi_w / ow)``), computed per ROI.
        aligned: if True, shift box coordinates by -0.5 (pixel-centre alignment) and do
            not clamp the ROI size; if False, ROI width/height are clamped to >= 1.
    Returns:
        ``(K, C, oh, ow)`` pooled features, same dtype as ``features``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got {tuple(features.shape)}")
    if isinstance(output_size, int):
        oh, ow = output_size, output_size
    else:
        oh, ow = int(output_size[0]), int(output_size[1])
    n, c, h, w = features.shape
    rois = convert_boxes_to_roi_format(boxes).to(features.device)
    k = rois.shape[0]
    # Low-precision inputs: do the coordinate / weight math in float32.
    cdtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    if k == 0:
        return features.new_zeros((0, c, oh, ow))

    rois = rois.detach().to(cdtype)
    batch_idx = rois[:, 0].to(torch.int64)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    x2 = rois[:, 3] * spatial_scale - offset
    y2 = rois[:, 4] * spatial_scale - offset
    roi_w = x2 - x1
    roi_h = y2 - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / oh
    bin_w = roi_w / ow
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64, device=rois.device)
        grid_w = grid_h.clone()
    else:
        grid_h = torch.ceil(roi_h / oh).to(torch.int64).clamp(min=0)
        grid_w = torch.ceil(roi_w / ow).to(torch.int64).clamp(min=0)
    count = (grid_h * grid_w).clamp(min=1).to(cdtype)

    ay = _axis_weights(y1, bin_h, grid_h, oh, h) / count.view(k, 1, 1)  # (K, oh, H)
    ax = _axis_weights(x1, bin_w, grid_w, ow, w)  # (K, ow, W)

    feats = features.to(cdtype)
    out = feats.new_zeros((k, c, oh, ow))
    for b in torch.unique(batch_idx).tolist():
        sel = (batch_idx == b).nonzero(as_tuple=True)[0]
        if b < 0 or b >= n:
            raise IndexError(f"roi batch index {b} out of range for {n} images")
        fb = feats[b]  # (C, H, W)
        # (Ks, oh, H) x (C, H, W) -> (Ks, C, oh, W)
        t = torch.einsum("kph,chw->kcpw", ay[sel], fb)
        # (Ks, C, oh, W) x (Ks, ow, W) -> (Ks, C, oh, ow)
        out = out.index_copy(0, sel, torch.einsum("kcpw,kqw->kcpq", t, ax[sel]))
    return out.to(features.dtype)

