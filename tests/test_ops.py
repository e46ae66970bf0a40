import math

import numpy as np
import pytest
import torch

from conceptseg.ops.boxes import (batched_nms, box_area, box_cxcywh_to_xyxy, box_iou, box_xyxy_to_cxcywh,
                                  generalized_box_iou, inverse_sigmoid, masks_to_boxes, nms)
from conceptseg.ops.masks import fill_holes, mask_iou, mask_nms, remove_small_regions, rle_decode, rle_encode
from conceptseg.ops.roi_align import roi_align


# ---------------------------------------------------------------- roi_align reference
def _bilinear_ref(img, y, x):
    """img: (H, W) float64 numpy; scalar Caffe2-style bilinear sample."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high]
            + ly * hx * img[y_high, x_low] + ly * lx * img[y_high, x_high])


def _roi_align_ref(feat, rois, oh, ow, scale, sampling_ratio, aligned):
    """feat: (N, C, H, W) numpy float64, rois: (K, 5) numpy. Plain loops."""
    k = rois.shape[0]
    c = feat.shape[1]
    out = np.zeros((k, c, oh, ow))
    off = 0.5 if aligned else 0.0
    for r in range(k):
        b = int(rois[r, 0])
        x1 = rois[r, 1] * scale - off
        y1 = rois[r, 2] * scale - off
        x2 = rois[r, 3] * scale - off
        y2 = rois[r, 4] * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / oh))
        gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / ow))
        count = max(gh * gw, 1)
        for ch in range(c):
            for ph in range(oh):
                for pw in range(ow):
                    acc = 0.0
                    for iy in range(gh):
                        y = y1 + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = x1 + pw * bw + (ix + 0.5) * bw / gw
                            acc += _bilinear_ref(feat[b, ch], y, x)
                    out[r, ch, ph, pw] = acc / count
    return out


def _random_rois(gen, n_img, img_h, img_w, k):
    rows = []
    for i in range(k):
        b = int(torch.randint(0, n_img, (1,), generator=gen))
        kind = i % 4
        if kind == 0:  # generic box, can stick out of the image
            x1, y1 = (torch.rand(2, generator=gen) * torch.tensor([img_w, img_h]) * 1.2 - 5).tolist()
            w, h = (torch.rand(2, generator=gen) * torch.tensor([img_w, img_h]) * 0.8 + 0.5).tolist()
        elif kind == 1:  # tiny box (< 1 px)
            x1, y1 = (torch.rand(2, generator=gen) * torch.tensor([img_w, img_h])).tolist()
            w, h = (torch.rand(2, generator=gen) * 0.9).tolist()
        elif kind == 2:  # large box, larger than the image
            x1, y1 = (-torch.rand(2, generator=gen) * 20).tolist()
            w, h = (torch.tensor([img_w, img_h]) * (1.0 + torch.rand(2, generator=gen))).tolist()
        else:  # partly / fully outside
            x1 = float(img_w - 3 + torch.rand(1, generator=gen) * 10)
            y1 = float(-10 + torch.rand(1, generator=gen) * 8)
            w, h = 6.0, 7.5
        rows.append([b, x1, y1, x1 + w, y1 + h])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale,out_size", [(1.0, (5, 4)), (0.25, 3)])
def test_roi_align_matches_reference(aligned, sampling_ratio, scale, out_size):
    gen = torch.Generator().manual_seed(1234)
    n, c, h, w = 3, 2, 11, 13
    feat = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    rois = _random_rois(gen, n, int(h / scale), int(w / scale), 16)
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    ref = _roi_align_ref(feat.numpy(), rois.numpy(), oh, ow, scale, sampling_ratio, aligned)
    got = roi_align(feat, rois, out_size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    assert got.shape == (16, c, oh, ow)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-5)
    got32 = roi_align(feat.float(), rois.float(), out_size, scale, sampling_ratio, aligned)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, atol=1e-5, rtol=1e-5)


def test_roi_align_box_list_and_grad():
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 8, 9, generator=gen, requires_grad=True)
    b0 = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.5, 2.0, 7.0, 6.5]])
    b1 = torch.tensor([[2.0, 1.0, 8.5, 7.0]])
    out_list = roi_align(feat, [b0, b1], 2, sampling_ratio=2, aligned=True)
    rois = torch.cat([torch.cat([torch.zeros(2, 1), b0], 1), torch.cat([torch.ones(1, 1), b1], 1)])
    out_t = roi_align(feat, rois, (2, 2), sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out_list, out_t)
    ref = _roi_align_ref(feat.detach().double().numpy(), rois.double().numpy(), 2, 2, 1.0, 2, True)
    np.testing.assert_allclose(out_t.detach().numpy(), ref, atol=1e-5)
    out_t.sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    f64 = feat.detach().double().requires_grad_(True)
    torch.autograd.gradcheck(lambda f: roi_align(f, rois.double(), 2, 1.0, 2, True), (f64,))


def test_roi_align_exact_image_boundaries():
    # Single samples landing exactly on y/x == -1 and y/x == H/W are still valid (inclusive).
    gen = torch.Generator().manual_seed(5)
    feat = torch.randn(1, 2, 4, 5, generator=gen, dtype=torch.float64)
    rois = torch.tensor([
        [0, -2.0, -2.0, 0.0, 0.0],   # sample at (-1, -1) -> f[0, 0]
        [0, 4.0, 3.0, 6.0, 5.0],     # sample at (x=5, y=4) == (W, H) -> f[H-1, W-1]
        [0, 4.0, 3.0, 6.2, 5.2],     # just beyond -> 0
        [0, -2.2, -2.2, 0.0, 0.0],   # just before -1 -> 0
    ], dtype=torch.float64)
    got = roi_align(feat, rois, 1, sampling_ratio=1)
    ref = _roi_align_ref(feat.numpy(), rois.numpy(), 1, 1, 1.0, 1, False)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(got[0, :, 0, 0].numpy(), feat[0, :, 0, 0].numpy())
    np.testing.assert_allclose(got[1, :, 0, 0].numpy(), feat[0, :, 3, 4].numpy())
    assert got[2:].abs().max() == 0
    # Reversed box with aligned=True: zero samples -> zeros.
    rev = roi_align(feat, torch.tensor([[0, 3.0, 3.0, 1.0, 1.0]], dtype=torch.float64), 2, aligned=True)
    assert rev.abs().max() == 0


def test_roi_align_empty_and_constant():
    feat = torch.ones(1, 4, 6, 6)
    assert roi_align(feat, torch.zeros(0, 5), 7).shape == (0, 4, 7, 7)
    # Box fully inside a constant map -> constant output.
    out = roi_align(feat, [torch.tensor([[0.5, 0.5, 4.5, 5.0]])], 3)
    torch.testing.assert_close(out, torch.ones(1, 4, 3, 3))


# ---------------------------------------------------------------- boxes
def test_box_conversions_and_area():
    xyxy = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 1.0, 3.0, 5.0]])
    cxcywh = torch.tensor([[2.0, 1.0, 4.0, 2.0], [2.0, 3.0, 2.0, 4.0]])
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), cxcywh)
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(box_area(xyxy), torch.tensor([8.0, 8.0]))


def test_box_iou_and_giou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    iou, union = box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0, 0.0]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 4.0, 5.0]]))
    giou = generalized_box_iou(a, b)
    # enclosing areas: 9, 4, 8 -> giou = iou - (C - U)/C
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, 0.0 - 3 / 8]])
    torch.testing.assert_close(giou, expected)


def test_inverse_sigmoid():
    x = torch.tensor([-0.5, 0.0, 0.25, 0.5, 0.9, 1.0, 2.0])
    y = inverse_sigmoid(x)
    eps = 1e-3
    expected = torch.tensor([math.log(eps / 1), math.log(eps / 1), math.log(0.25 / 0.75), 0.0,
                             math.log(0.9 / 0.1), math.log(1 / eps), math.log(1 / eps)])
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(torch.sigmoid(inverse_sigmoid(torch.tensor([0.3, 0.7]))), torch.tensor([0.3, 0.7]))


def test_nms_hand_computed():
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # s=0.9 keep
        [1.0, 1.0, 11.0, 11.0],   # s=0.8 iou with 0 = 81/119 = 0.68 -> suppressed
        [20.0, 20.0, 30.0, 30.0],  # s=0.7 keep
        [0.0, 0.0, 10.0, 5.0],    # s=0.95 keep (iou with 0 = 0.5, not > 0.5)
        [21.0, 20.0, 31.0, 30.0],  # s=0.6 iou with 2 = 90/110 -> suppressed
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6])
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.9).tolist() == [3, 0, 1, 2, 4]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    # A suppressed box does not suppress others: chain A > B > C where B overlaps both.
    chain = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [10.0, 0, 20, 10]])
    assert nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_batched_nms():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [1.0, 1, 11, 11]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idxs = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 1]


def test_masks_to_boxes():
    m = torch.zeros(3, 5, 6, dtype=torch.bool)
    m[0, 1:3, 2:5] = True
    m[1, 4, 0] = True
    out = masks_to_boxes(m)
    torch.testing.assert_close(out, torch.tensor([[2.0, 1.0, 4.0, 2.0], [0.0, 4.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))


# ---------------------------------------------------------------- masks
def test_mask_iou_and_nms():
    m = torch.zeros(3, 4, 4, dtype=torch.bool)
    m[0, :2, :] = True      # 8 px
    m[1, :2, :2] = True     # 4 px, inside m0
    m[2, 2:, :] = True      # 8 px, disjoint from m0
    iou = mask_iou(m, m)
    expected = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(iou, expected)
    assert mask_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)).item() == 0.0
    scores = torch.tensor([0.5, 0.9, 0.1])
    assert mask_nms(m, scores, 0.4).tolist() == [1, 2]
    assert mask_nms(m, scores, 0.5).tolist() == [1, 0, 2]


def test_rle_round_trip():
    gen = torch.Generator().manual_seed(3)
    m = torch.rand(4, 17, 23, generator=gen) > 0.5
    m[0] = False
    m[1] = True
    rles = rle_encode(m)
    assert len(rles) == 4
    assert all(isinstance(r["counts"], str) and r["size"] == [17, 23] for r in rles)
    back = rle_decode(rles)
    assert back.dtype == torch.bool and torch.equal(back, m)
    # Uncompressed RLE counts (column-major runs starting with zeros).
    un = rle_decode([{"size": [2, 2], "counts": [1, 2, 1]}])
    assert torch.equal(un, torch.tensor([[[False, True], [True, False]]]))
    assert rle_encode(torch.zeros(0, 3, 3, dtype=torch.bool)) == []


def test_fill_holes():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[1:8, 1:8] = True
    m[3, 3] = False            # 1-px hole
    m[5:7, 5:7] = False        # 4-px hole
    m[0:3, 8] = False          # border background stays
    out = fill_holes(m, max_area=1)
    assert out[3, 3] and not out[5:7, 5:7].any()
    out = fill_holes(m, max_area=4)
    assert out[1:8, 1:8].all() and not out[0].any() and not out[:, 8].any()
    # Border-touching background region of 1 px is never filled.
    e = torch.ones(4, 4, dtype=torch.bool)
    e[0, 1] = False
    assert torch.equal(fill_holes(e, max_area=10), e)
    # Batched input and no-op for max_area <= 0.
    batch = torch.stack([m, m])
    assert fill_holes(batch, 4).shape == (2, 9, 9)
    assert torch.equal(fill_holes(m, 0), m)


def test_fill_holes_connectivity():
    # Diagonal background pixels: one hole with 8-connectivity, two holes with 4.
    m = torch.ones(6, 6, dtype=torch.bool)
    m[2, 2] = False
    m[3, 3] = False
    assert fill_holes(m, 1, connectivity=8)[2, 2].item() is False
    assert fill_holes(m, 1, connectivity=4).all()
    assert fill_holes(m, 2, connectivity=8).all()


def test_remove_small_regions():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[0:4, 0:4] = True        # 16 px region
    m[6, 6] = True            # 1 px
    m[6:8, 0:2] = True        # 4 px
    out = remove_small_regions(m, max_area=1)
    assert not out[6, 6] and out[6:8, 0:2].all() and out[0:4, 0:4].all()
    out = remove_small_regions(m, max_area=4)
    assert out.sum() == 16
    # diagonal neighbours: one region (8-conn) vs two 1-px regions (4-conn)
    d = torch.zeros(5, 5, dtype=torch.bool)
    d[1, 1] = d[2, 2] = True
    assert remove_small_regions(d, 1, connectivity=8).sum() == 2
    assert remove_small_regions(d, 1, connectivity=4).sum() == 0
