"""ImagePredictor: encode an image once, then ask for any number of concepts."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.detector import ImageFeatures, Sam3Detector, TextFeatures
from ..text.tokenizer import ClipTokenizer
from .image_io import load_image, preprocess
from .results import Prediction

MAX_PROMPT_CHARS = 500  # the encoder sees 32 tokens; far longer text is a mistake, not a prompt
Exemplar = tuple[Sequence[float], bool]  # ((x0, y0, x1, y1) in pixels, positive?)


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


def validate_exemplars(exemplars: Iterable[Exemplar], width: int, height: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel xyxy boxes with labels -> (N x 4 normalised cxcywh, N labels)."""
    boxes, labels = [], []
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
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise InputError(f"exemplar {i} ({x0:g},{y0:g},{x1:g},{y1:g}) lies outside the "
                             f"{width}x{height} image")
        boxes.append([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                      (y1 - y0) / height])
        labels.append(1 if positive else 0)
    return torch.tensor(boxes, dtype=torch.float32).view(-1, 4), torch.tensor(labels).long()


class ImagePredictor:
    """Promptable concept segmentation on one image at a time.

    >>> pred = ImagePredictor(model); pred.set_image("street.jpg")
    >>> r = pred.predict(text="yellow school bus")            # every instance
    >>> rs = pred.predict(text=["bus", "person"])             # one image encoding, batched
    """

    def __init__(self, model: Sam3Detector, *, device: str | torch.device | None = None,
                 precision: str = "fp32", text_cache_size: int = 256,
                 tokenizer: ClipTokenizer | None = None):
        if precision not in ("fp32", "bf16"):
            raise ValueError("precision must be 'fp32' or 'bf16'")
        self.model = model.eval()
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
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
        with self._autocast():
            feats = self.model.encode_image(x)
        self.features = ImageFeatures([t.float() for t in feats.levels], feats.pos)
        return self

    def encode_texts(self, texts: list[str]) -> TextFeatures:
        """Text features for each text (cached by string), stacked in order."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            with self._autocast():
                tf = self.model.encode_text(tokens)
            for i, t in enumerate(todo):
                self._text_cache[t] = TextFeatures(tf.feats[i:i + 1].float(), tf.padding[i:i + 1],
                                                   tf.embeds[i:i + 1].float())
                while len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        rows = []
        for t in texts:
            self._text_cache.move_to_end(t)
            rows.append(self._text_cache[t])
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
