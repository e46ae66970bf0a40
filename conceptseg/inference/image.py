"""ImagePredictor: encode an image once, then ask for any number of concepts (batched over one
image encoding); with the tracker weights, also SAM-style interactive masks (clicks, box, mask)
and refinement of one found instance (:meth:`ImagePredictor.refine`, in ``image_refine.py``)."""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.detector import ImageFeatures, Sam3Detector, TextFeatures
from ..model.video_model import check_compatible
from ..runtime import resolve_device
from ..text.tokenizer import ClipTokenizer
from .concept import Concept, encode_concept, model_fingerprint, stack_prompts
from .image_io import load_image, preprocess, squash_note
from .image_refine import build_prompt, interactive_heads, run_refine
from .prompts import Exemplar, validate_exemplars, validate_text
from .results import Prediction, Refinement, plain_cpu

PRECISIONS = ("fp32", "bf16")  # fp16 overflows in the vision trunk


def image_fingerprint(rgb: np.ndarray) -> str:
    """A short hash of the decoded pixels: ties each result to the image it was made on."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


class ImagePredictor:
    """Promptable concept segmentation on one image at a time.

    >>> pred = ImagePredictor(model); pred.set_image("street.jpg")
    >>> r = pred.predict(text="yellow school bus")            # every instance
    >>> rs = pred.predict(text=["bus", "person"])             # one image encoding, batched
    >>> bus = pred.encode_concept(exemplars=[((10, 20, 200, 180), True)])   # a reusable Concept
    >>> pred.set_image("depot.jpg").predict(concept=bus)      # found on another image

    With the tracker weights (``ImagePredictor(load_video_model(path))``, or
    ``ImagePredictor(model, tracker=video_model)``), :meth:`refine` gives SAM-style masks from
    clicks / a box / a mask on the same image encoding.
    """

    def __init__(self, model: Sam3Detector, *, tracker=None,
                 device: str | torch.device | None = None,
                 precision: str = "fp32", text_cache_size: int = 256,
                 tokenizer: ClipTokenizer | None = None):
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if hasattr(model, "detector") and hasattr(model, "tracker"):  # a VideoModel
            tracker = model if tracker is None else tracker
            model = model.detector
        self._trk, self._neck = interactive_heads(tracker)
        if self._trk is not None:
            check_compatible(model.config, self._trk.cfg)
        self.model = model.eval()
        self.device = resolve_device(device) if device else next(model.parameters()).device
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
        self.image_id: str | None = None  # fingerprint of the current image (image_fingerprint)
        self._model_id: str | None = None  # model_fingerprint, once a concept needs it

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def set_image(self, image) -> "ImagePredictor":
        """Decode, preprocess and run the vision encoder once; later prompts reuse it."""
        rgb = load_image(image)
        self.image_size = (rgb.shape[0], rgb.shape[1])
        self.image_id = image_fingerprint(rgb)
        note = squash_note(rgb.shape[1], rgb.shape[0], self.model.config.vision.image_size)
        if note:
            warnings.warn(note, stacklevel=2)
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

    def encode_concept(self, text: str | None = None, exemplars: Sequence[Exemplar] = (),
                       name: str | None = None) -> Concept:
        """A reusable :class:`~conceptseg.inference.concept.Concept` from exemplar boxes (pixel
        xyxy with a positive/negative flag, clipped to the image) on the current image and/or a
        phrase; ``predict(concept=...)`` finds it on any other image."""
        if self.features is None or self.image_size is None:
            raise InputError("call set_image() before encode_concept()")
        with self._autocast():
            return encode_concept(self.model, self.features, self.image_size, self.image_id,
                                  text, exemplars, name)

    @torch.inference_mode()
    def predict(self, text: str | list[str] | None = None, exemplars: Sequence[Exemplar] = (),
                threshold: float = 0.5, return_probs: bool = False,
                concept: Concept | Sequence[Concept] | None = None,
                max_instances: int | None = None) -> Prediction | list[Prediction]:
        """Find every instance of each concept.

        text: one phrase or a list (batched over one image encoding). exemplars: boxes in pixel
        xyxy with a positive/negative flag, applied to every phrase; with no text the official
        placeholder text "visual" is used. concept: one :class:`Concept` or a list (made on any
        image by :meth:`encode_concept` or loaded), batched with the phrases; their results
        follow the phrases' (a list whenever a list or both kinds are given). Only instances
        scoring above ``threshold`` get full-size masks; ``max_instances`` keeps only the best
        that many per prompt before any full-size mask is decoded (a crowded image cannot
        exhaust memory).
        """
        if self.features is None or self.image_size is None:
            raise InputError("call set_image() before predict()")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be within [0, 1], got {threshold}")
        if max_instances is not None and max_instances < 0:
            raise InputError(f"max_instances must be >= 0, got {max_instances}")
        concepts = self._check_concepts(concept)
        if isinstance(text, (list, tuple)):
            texts = list(text)
        else:
            texts = [] if text is None and concepts else [text]
        single = (not isinstance(text, (list, tuple)) and not isinstance(concept, (list, tuple))
                  and len(texts) + len(concepts) == 1)
        if not texts and not concepts:
            raise InputError("no prompt given")
        if texts == [None]:
            if not exemplars:
                raise InputError("give a text prompt, exemplar boxes, or both")
            texts = ["visual"]
        if exemplars and not texts:
            raise InputError("exemplars apply to text prompts; to add boxes to a concept, "
                             "encode_concept() them and Concept.merge()")
        texts = [validate_text(t) for t in texts]
        H, W = self.image_size
        boxes, labels = validate_exemplars(exemplars, W, H)
        B = len(texts) + len(concepts)
        image = self.features.select(torch.zeros(B, dtype=torch.long, device=self.device))
        with self._autocast():
            prompt, padding = self._prompts(texts, boxes, labels, concepts)
            out = self.model.forward_prompt(image, prompt, padding, with_masks=False)
        texts = texts + [c.text for c in concepts]
        presence = out["presence_logit_dec"].float().sigmoid()  # B x 1
        scores = out["pred_logits"].float().sigmoid()[..., 0] * presence  # B x Q
        results = []
        for b in range(B):
            keep = torch.nonzero(scores[b] > threshold).flatten()
            found = int(keep.numel())
            keep = keep[scores[b, keep].argsort(descending=True)][:max_instances]
            results.append(self._finish(texts[b], out, b, keep, scores[b], float(presence[b]),
                                        return_probs))
            results[-1].num_found = found
        if text is None and not concepts and texts == ["visual"]:
            results[0].text = None
        return results[0] if single else results

    def _check_concepts(self, concept) -> list[Concept]:
        concepts = [] if concept is None else list(concept) if isinstance(concept, (list, tuple)) \
            else [concept]
        for c in concepts:
            if not isinstance(c, Concept):
                raise InputError(f"concept must be a Concept, got {type(c).__name__}")
            c.check_model(self._model_fingerprint())
        return concepts

    def _model_fingerprint(self) -> str:
        if self._model_id is None:  # hashed once per predictor: its weights are fixed
            self._model_id = model_fingerprint(self.model)
        return self._model_id

    def _prompts(self, texts: list[str], boxes: torch.Tensor, labels: torch.Tensor,
                 concepts: list[Concept]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt tokens for the phrase rows (boxes on this image) then the concept rows,
        padded to one length when both are given: B x P x C and B x P."""
        rows = []
        if texts:
            n = len(texts)
            box_args = (None, None)
            if boxes.shape[0]:
                box_args = (boxes.to(self.device)[None].expand(n, -1, -1),
                            labels.to(self.device)[None].expand(n, -1))
            image = self.features.select(torch.zeros(n, dtype=torch.long, device=self.device))
            rows.append(self.model.encode_prompt(image, self.encode_texts(texts), *box_args))
        if concepts:
            tf = self.encode_texts([c.query_text for c in concepts])
            rows += [c.prompt(TextFeatures(tf.feats[i:i + 1], tf.padding[i:i + 1],
                                           tf.embeds[i:i + 1])) for i, c in enumerate(concepts)]
        return rows[0] if len(rows) == 1 else stack_prompts(rows)

    def _finish(self, text: str, out: dict, b: int, keep: torch.Tensor, scores: torch.Tensor,
                presence: float, return_probs: bool) -> Prediction:
        H, W = self.image_size
        size = torch.tensor([W, H, W, H], device=self.device)
        boxes = out["pred_boxes_xyxy"][b, keep].float() * size
        boxes = torch.minimum(boxes.clamp(min=0), size)  # clipped to the image
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
        return Prediction(text=text, masks=plain_cpu(masks), boxes=plain_cpu(boxes),
                          scores=plain_cpu(scores[keep]), presence=presence, image_size=(H, W),
                          mask_probs=plain_cpu(probs), image_id=self.image_id)

    # -- interactive refinement (tracker heads) -------------------------------------------------
    def _tracker_features(self):
        if self._trk_feats is None:
            with torch.inference_mode():
                self._trk_feats = self._trk.prepare_features(*self._neck(self._trunk_out))
            self._trunk_out = None  # not needed any more
        return self._trk_feats

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
        :class:`~conceptseg.inference.results.Prediction` made on this image: its box (unless
        ``box`` is given) and its mask (as ``mask_input`` logits, unless given) join the clicks.
        """
        if self.features is None or self.image_size is None:
            raise InputError("call set_image() before refine()")
        if self._trk is None:
            raise InputError("refine() needs the tracker weights: use "
                             "ImagePredictor(load_video_model(path)) or pass tracker=")
        prompt = build_prompt(points, labels, box, mask_input, instance, self.image_size,
                              self.image_id)
        return run_refine(self._trk, self._tracker_features(), prompt, self.image_size,
                          self.device, multimask)
