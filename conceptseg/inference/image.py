"""ImagePredictor: encode an image once, then ask for any number of concepts; with the tracker
weights, also SAM-style interactive masks (clicks, box, mask) and refinement of one found
instance (:meth:`ImagePredictor.refine`)."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError
from ..model.detector import ImageFeatures, Sam3Detector, TextFeatures
from ..text.tokenizer import ClipTokenizer
from .image_io import load_image, preprocess
from .prompts import Exemplar, parse_clicks, validate_exemplars, validate_text
from .results import Prediction

REFINE_MAX_HOLE_AREA = 256  # official SAM3InteractiveImagePredictor default, at 288 x 288


@dataclass
class Refinement:
    """Result of :meth:`ImagePredictor.refine`, best first (decreasing predicted IoU).

    masks K x H x W bool at the image size; scores K predicted IoU; logits K x r x r low-res
    mask logits clamped to +-32 (pass ``logits[i]`` back as ``mask_input`` to refine further).
    """

    masks: torch.Tensor
    scores: torch.Tensor
    logits: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())


def _interactive_heads(tracker):
    """(Tracker, TrackerNeck) from a VideoModel, a (tracker, neck) pair or None."""
    if tracker is None:
        return None, None
    if hasattr(tracker, "tracker") and hasattr(tracker, "neck"):
        return tracker.tracker, tracker.neck
    if isinstance(tracker, (tuple, list)) and len(tracker) == 2:
        return tracker[0], tracker[1]
    raise TypeError("tracker must be a VideoModel (conceptseg.build.load_video_model) or a "
                    "(Tracker, TrackerNeck) pair")


def _fill_small_background(logits: torch.Tensor, max_area: int, value: float) -> torch.Tensor:
    """Background (<= 0) 8-connected components of area <= max_area (also those touching the
    border) set to ``value``: the official SAM 1 predictor's hole filling. K x h x w."""
    if max_area <= 0:
        return logits
    bg = (logits <= 0).cpu().numpy()
    fill = np.zeros_like(bg)
    for k, b in enumerate(bg):
        lab, n = ndimage.label(b, structure=np.ones((3, 3), dtype=bool))
        if n:
            areas = np.bincount(lab.ravel(), minlength=n + 1)
            areas[0] = max_area + 1
            fill[k] = (areas[lab] <= max_area) & b
    return torch.where(torch.from_numpy(fill).to(logits.device),
                       torch.tensor(value, dtype=logits.dtype, device=logits.device), logits)


class ImagePredictor:
    """Promptable concept segmentation on one image at a time.

    >>> pred = ImagePredictor(model); pred.set_image("street.jpg")
    >>> r = pred.predict(text="yellow school bus")            # every instance
    >>> rs = pred.predict(text=["bus", "person"])             # one image encoding, batched

    With the tracker weights (``ImagePredictor(load_video_model(path))``, or
    ``ImagePredictor(model, tracker=video_model)``), :meth:`refine` gives SAM-style masks from
    clicks / a box / a mask on the same image encoding.
    """

    def __init__(self, model: Sam3Detector, *, tracker=None,
                 device: str | torch.device | None = None,
                 precision: str = "fp32", text_cache_size: int = 256,
                 tokenizer: ClipTokenizer | None = None):
        if precision not in ("fp32", "bf16"):
            raise ValueError("precision must be 'fp32' or 'bf16'")
        if hasattr(model, "detector") and hasattr(model, "tracker"):  # a VideoModel
            tracker = model if tracker is None else tracker
            model = model.detector
        self._trk, self._neck = _interactive_heads(tracker)
        if self._trk is not None:
            from ..model.video_model import check_compatible

            check_compatible(model.config, self._trk.cfg)
        self.model = model.eval()
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
        if self._trk is not None:
            self._trk.eval().to(self.device)
            self._neck.eval().to(self.device)
        self._trunk_out: torch.Tensor | None = None
        self._trk_feats = None
        self.precision = precision
        self.tokenizer = tokenizer or ClipTokenizer(context_length=model.config.text.context_length)
        self._text_cache: OrderedDict[str, TextFeatures] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.features: ImageFeatures | None = None
        self.image_size: tuple[int, int] | None = None  # (height, width)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def set_image(self, image) -> "ImagePredictor":
        """Decode, preprocess and run the vision encoder once; later prompts reuse it."""
        rgb = load_image(image)
        self.image_size = (rgb.shape[0], rgb.shape[1])
        x = preprocess(rgb, self.model.config.vision.image_size).to(self.device)
        self._trunk_out, self._trk_feats = None, None
        with self._autocast():
            if self._trk is not None:  # one trunk pass; the tracker neck runs on refine()
                vb = self.model.backbone.vision_backbone
                trunk = vb.trunk(x)
                feats = ImageFeatures(*vb.fpn(trunk))
                self._trunk_out = trunk.float()
            else:
                feats = self.model.encode_image(x)
        self.features = ImageFeatures([t.float() for t in feats.levels], feats.pos)
        return self

    def encode_texts(self, texts: list[str]) -> TextFeatures:
        """Text features for each text (cached by string), stacked in order."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        found = {t: self._text_cache[t] for t in dict.fromkeys(texts) if t in self._text_cache}
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            with self._autocast():
                tf = self.model.encode_text(tokens)
            for i, t in enumerate(todo):
                found[t] = TextFeatures(tf.feats[i:i + 1].float(), tf.padding[i:i + 1],
                                        tf.embeds[i:i + 1].float())
        # rows come from this call's own lookups: refreshing the LRU cache below may evict
        # some of this call's texts when it holds more distinct texts than the cache
        rows = [found[t] for t in texts]
        for t, f in found.items():
            self._text_cache[t] = f
            self._text_cache.move_to_end(t)
        while len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        return TextFeatures(torch.cat([r.feats for r in rows]), torch.cat([r.padding for r in rows]),
                            torch.cat([r.embeds for r in rows]))

    @torch.inference_mode()
    def predict(self, text: str | list[str] | None = None, exemplars: Sequence[Exemplar] = (),
                threshold: float = 0.5, return_probs: bool = False
                ) -> Prediction | list[Prediction]:
        """Find every instance of each concept.

        text: one phrase or a list (batched over one image encoding). exemplars: boxes in pixel
        xyxy with a positive/negative flag, applied to every phrase; with no text the official
        placeholder text "visual" is used. Only instances scoring above ``threshold`` get
        full-size masks.
        """
        if self.features is None or self.image_size is None:
            raise InputError("call set_image() before predict()")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be within [0, 1], got {threshold}")
        single = not isinstance(text, (list, tuple))
        texts = [text] if single else list(text)
        if not texts:
            raise InputError("no prompt given")
        if texts == [None]:
            if not exemplars:
                raise InputError("give a text prompt, exemplar boxes, or both")
            texts = ["visual"]
        texts = [validate_text(t) for t in texts]
        H, W = self.image_size
        boxes, labels = validate_exemplars(exemplars, W, H)
        B = len(texts)
        tf = self.encode_texts(texts)
        image = self.features.select(torch.zeros(B, dtype=torch.long, device=self.device))
        box_args = (None, None)
        if boxes.shape[0]:
            box_args = (boxes.to(self.device)[None].expand(B, -1, -1),
                        labels.to(self.device)[None].expand(B, -1))
        with self._autocast():
            out = self.model.forward_grounding(image, tf, *box_args, with_masks=False)
        presence = out["presence_logit_dec"].float().sigmoid()  # B x 1
        scores = out["pred_logits"].float().sigmoid()[..., 0] * presence  # B x Q
        results = []
        for b in range(B):
            keep = torch.nonzero(scores[b] > threshold).flatten()
            keep = keep[scores[b, keep].argsort(descending=True)]
            results.append(self._finish(texts[b], out, b, keep, scores[b], float(presence[b]),
                                        return_probs))
        if single and texts == ["visual"] and text is None:
            results[0].text = None
        return results[0] if single else results

    def _finish(self, text: str, out: dict, b: int, keep: torch.Tensor, scores: torch.Tensor,
                presence: float, return_probs: bool) -> Prediction:
        H, W = self.image_size
        boxes = out["pred_boxes_xyxy"][b, keep].float() * torch.tensor([W, H, W, H], device=self.device)
        if keep.numel():
            # Masks only for the kept queries: the pixel decoder runs once per prompt, the
            # upsampling to full size only for instances above the threshold.
            with self._autocast():
                pixels = self.model.segmentation_head.pixel_embedding(
                    self.features.levels, out["encoder_hidden_states"][b:b + 1],
                    out["prompt"][b:b + 1], out["prompt_padding"][b:b + 1])
                logits, _ = self.model.mask_logits(pixels, out["queries"][b:b + 1, keep])
            up = F.interpolate(logits.float(), size=(H, W), mode="bilinear", align_corners=False)[0]
            masks = up > 0  # == sigmoid(x) > 0.5 except where float32 sigmoid rounds to 0.5 (|x| < 3e-8)
            probs = up.sigmoid() if return_probs else None
        else:
            masks = torch.zeros(0, H, W, dtype=torch.bool, device=self.device)
            probs = torch.zeros(0, H, W, device=self.device) if return_probs else None
        return Prediction(text=text, masks=masks.cpu(), boxes=boxes.cpu(),
                          scores=scores[keep].cpu(), presence=presence, image_size=(H, W),
                          mask_probs=None if probs is None else probs.cpu())

    # -- interactive refinement (tracker heads) -------------------------------------------------
    def _tracker_features(self):
        if self._trk_feats is None:
            with torch.inference_mode():
                self._trk_feats = self._trk.prepare_features(*self._neck(self._trunk_out))
            self._trunk_out = None  # not needed any more
        return self._trk_feats

    def _parse_points(self, points, labels) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = self.image_size
        return parse_clicks(points, labels, W, H, "image")

    def _parse_box(self, box) -> torch.Tensor:
        H, W = self.image_size
        try:
            x0, y0, x1, y1 = (float(v) for v in (box.tolist() if torch.is_tensor(box) else box))
        except (TypeError, ValueError):
            raise InputError("box must be (x0, y0, x1, y1) in pixels") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise InputError("box has a non-finite coordinate")
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) needs x0 < x1 and y0 < y1")
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            raise InputError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) lies outside the {W}x{H} image")
        return torch.tensor([[x0, y0], [x1, y1]], dtype=torch.float32)

    def _parse_mask(self, mask) -> torch.Tensor:
        try:
            m = torch.as_tensor(mask.detach().cpu().numpy() if torch.is_tensor(mask)
                                else np.asarray(mask, dtype=np.float32), dtype=torch.float32)
        except (TypeError, ValueError):
            raise InputError("mask_input must be an h x w array of mask logits") from None
        while m.dim() > 2 and m.shape[0] == 1:
            m = m[0]
        if m.dim() != 2 or min(m.shape) < 1:
            raise InputError(f"mask_input must be h x w logits, got shape {tuple(m.shape)}")
        if not torch.isfinite(m).all():
            raise InputError("mask_input has non-finite values")
        return m[None, None]

    @torch.inference_mode()
    def refine(self, points=None, labels=None, box=None, mask_input=None, multimask: bool = False,
               instance=None) -> Refinement:
        """SAM-style interactive mask on the cached image, with the tracker's SAM heads (as the
        official ``predict_inst``: no memory, ``no_mem_embed`` added).

        points: N x (x, y) pixels, labels 1 positive / 0 negative (default all positive);
        box: (x0, y0, x1, y1) pixels; mask_input: h x w mask logits (e.g. ``logits[0]`` of a
        previous :class:`Refinement`; resized to the decoder's 4g x 4g input if needed);
        multimask: three candidate masks instead of one (best first either way).
        instance: ``(prediction, i)`` refines instance i of a text / exemplar
        :class:`~conceptseg.inference.results.Prediction` of this image: its box (unless
        ``box`` is given) and its mask (as ``mask_input`` logits, unless given) join the clicks.
        """
        if self.features is None or self.image_size is None:
            raise InputError("call set_image() before refine()")
        if self._trk is None:
            raise InputError("refine() needs the tracker weights: use "
                             "ImagePredictor(load_video_model(path)) or pass tracker=")
        H, W = self.image_size
        inst_mask = None
        if instance is not None:
            try:
                pred, idx = instance
                idx = int(idx)
            except (TypeError, ValueError):
                raise InputError("instance must be (prediction, index)") from None
            if not isinstance(pred, Prediction):
                raise InputError("instance must be (Prediction, index) from predict()")
            if tuple(pred.image_size) != (H, W):
                raise InputError(f"instance comes from a {pred.image_size[1]}x"
                                 f"{pred.image_size[0]} image, not this {W}x{H} one")
            if not 0 <= idx < len(pred):
                raise InputError(f"instance index {idx} is out of range ({len(pred)} instances)")
            if box is None:
                box = [min(max(v, lo), hi) for v, lo, hi in
                       zip(pred.boxes[idx].tolist(), (0, 0, 0, 0), (W, H, W, H))]
            if mask_input is None:
                inst_mask = pred.masks[idx]
        pts = self._parse_points(points, labels) if points is not None else None
        if pts is None and labels is not None:
            raise InputError("labels given without points")
        box_t = self._parse_box(box) if box is not None else None
        mask = self._parse_mask(mask_input) if mask_input is not None else None
        if inst_mask is not None:
            mask = inst_mask.to(torch.float32)[None, None] * 20.0 - 10.0
        if pts is None and box_t is None and mask is None:
            raise InputError("give points, a box, a mask_input or an instance")

        trk = self._trk
        feats = self._tracker_features()
        S = trk.cfg.image_size
        scale = torch.tensor([S / W, S / H], dtype=torch.float32)
        coords, labs = [], []
        if box_t is not None:
            coords.append(box_t * scale)
            labs.append(torch.tensor([2, 3], dtype=torch.int32))
        if pts is not None:
            coords.append(pts[0] * scale)
            labs.append(pts[1])
        enc = trk.sam_prompt_encoder
        r = enc.mask_input_size
        if mask is not None:
            mask = mask.to(self.device)
            if tuple(mask.shape[-2:]) != (r, r):
                mask = F.interpolate(mask, size=(r, r), mode="bilinear", align_corners=False,
                                     antialias=True)
        if coords:
            c = torch.cat(coords)[None].to(self.device)
            lab = torch.cat(labs)[None].to(self.device)
            sparse, dense = enc(c, lab, mask, 1)
        else:  # mask only: no sparse tokens at all (official SAM 1 predictor)
            sparse = feats.image.new_zeros(1, 0, trk.cfg.d_model)
            dense = enc.embed_mask(mask)
        dec = trk.sam_mask_decoder(trk.no_memory(feats), enc.dense_pe(), sparse, dense,
                                   feats.high_res, bool(multimask))
        low = dec.masks[0].float()  # K x r x r
        ious = dec.ious[0].float()
        hole = int(round(REFINE_MAX_HOLE_AREA * (low.shape[-1] / 288) ** 2))
        filled = _fill_small_background(low, hole, 10.0)
        up = F.interpolate(filled[None], size=(H, W), mode="bilinear", align_corners=False)[0]
        order = torch.argsort(ious, descending=True, stable=True)
        return Refinement((up > 0)[order].cpu(), ious[order].cpu(),
                          low.clamp(-32.0, 32.0)[order].cpu())
