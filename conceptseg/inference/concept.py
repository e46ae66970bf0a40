"""Concepts as objects: exemplar boxes encoded once on their own image, reused on any other.

A :class:`Concept` holds what the geometry / exemplar encoder (``model/prompt.py``) made of
some boxes on their reference image: one token per box (the sum of the box coordinates, a
RoI-Align of that image's features under the box, its position and label embeddings, then
self-attention among the boxes and cross-attention to the reference image) plus the encoder's
CLS token. Those tokens carry the reference image's appearance of the boxed thing, which is why
they find it on other images; the target image only enters through the fusion encoder and the
decoder, exactly as for a text prompt. The phrase (if any) is kept as text and encoded on use.

Making and using one (``ImagePredictor`` does this for you)::

    concept = pred.encode_concept(exemplars=[((10, 20, 200, 180), True)])   # on image A
    pred.set_image(b); pred.predict(concept=concept)                          # any image B
    Concept.merge([c1, c2]).save("bolt.concept"); Concept.load("bolt.concept", model=model)

Interface for other callers (video sessions): for a frame's detector features ``image`` and
the detector ``model``::

    concept.check_model(model)                    # ConceptSegError if made with another model
    text = encode_text(concept.query_text)        # TextFeatures, 1 row ("visual" if no phrase)
    prompt, padding = concept.prompt(text)        # 1 x P x C, 1 x P (True = absent), text's device/dtype
    out = model.forward_prompt(image, prompt, padding)   # = forward_grounding's outputs

:func:`stack_prompts` pads several rows (concepts, or text prompts beside them) into one batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import safetensors.torch as st
import torch
from torch import Tensor

from ..atomic import atomic_write
from ..errors import InputError
from ..model.detector import ImageFeatures, Sam3Detector, TextFeatures
from .prompts import Exemplar, clip_exemplars, validate_exemplars, validate_text

PLACEHOLDER_TEXT = "visual"  # the official text of an exemplar-only prompt
FORMAT = "conceptseg.concept"  # safetensors metadata "format" of a saved concept
VERSION = "1"
MAX_REFERENCE_IMAGES = 3  # Concept.merge pools exemplars from at most this many images
# weights hashed into the model fingerprint beside the whole geometry encoder: the ends of the
# trunk and of the fusion / decoder stack, and the scorer that pools the prompt
_FINGERPRINT_PREFIXES = ("geometry_encoder.", "dot_prod_scoring.prompt_proj.")
_FINGERPRINT_ENDS = ("backbone.vision_backbone.", "backbone.language_backbone.", "transformer.")
_UNHASHED_CONFIG = ("name", "score_bias")  # a label and a calibration: tokens stay valid


def model_fingerprint(model) -> str:
    """A short hash of a detector (or a video model's detector): its architecture config and a
    few weight tensors. Concepts record it; another model's tokens would mean nothing."""
    det = getattr(model, "detector", model)
    cfg = {k: v for k, v in det.config.to_dict().items() if k not in _UNHASHED_CONFIG}
    h = hashlib.blake2b(json.dumps(cfg, sort_keys=True, default=str).encode(), digest_size=8)
    named = list(det.named_parameters())
    chosen = [(n, p) for n, p in named if n.startswith(_FINGERPRINT_PREFIXES)]
    for prefix in _FINGERPRINT_ENDS:
        group = [(n, p) for n, p in named if n.startswith(prefix)]
        chosen += group[:1] + group[-1:]
    for name, p in chosen:
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class ConceptSource:
    """One reference image a concept's exemplars were boxed on."""

    image_id: str | None  # fingerprint of the decoded pixels (inference.image.image_fingerprint)
    image_size: tuple[int, int]  # (height, width) in pixels
    boxes: list[list[float]]  # pixel xyxy of each exemplar, after clipping to the image
    labels: list[int]  # 1 positive / 0 negative, one per box


@dataclass(repr=False)
class Concept:
    """A reusable concept prompt: a phrase and/or exemplar tokens from 1-3 reference images."""

    text: str | None  # the phrase; None = exemplars only (the placeholder "visual" is encoded)
    tokens: Tensor  # N x C float32 CPU: exemplar tokens as the geometry encoder made them
    labels: Tensor  # N int64: 1 positive / 0 negative, aligned with tokens
    cls: Tensor  # C float32 CPU: the encoder's CLS token made with them (merged: the mean)
    sources: list[ConceptSource]  # where the exemplars came from, in token order
    model_id: str  # model_fingerprint of the model that made the tokens
    name: str | None = field(default=None)  # a label for outputs (e.g. the file's stem)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        return (f"Concept({self.name or self.text or 'exemplars'!r}, text={self.text!r}, "
                f"{len(self)} exemplar(s) from {len(self.sources)} image(s), model {self.model_id})")

    @property
    def query_text(self) -> str:
        """The text the detector encodes beside the tokens."""
        return self.text if self.text is not None else PLACEHOLDER_TEXT

    @property
    def label(self) -> str:
        """How outputs name it: its name, else its phrase, else "exemplars"."""
        return self.name or self.text or "exemplars"

    def check_model(self, model) -> None:
        """InputError unless ``model`` (or its :func:`model_fingerprint`) is the one the tokens
        were made with."""
        found = model if isinstance(model, str) else model_fingerprint(model)
        if found != self.model_id:
            raise InputError(f"concept {self.label!r} was made with model {self.model_id}, not with "
                             f"this one ({found}); make it again with this model")

    def prompt(self, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """The detector's prompt for this concept: [text tokens; exemplar tokens; CLS].

        text: the features of :attr:`query_text`, one row (its device and dtype are used).
        Returns prompt 1 x P x C and padding 1 x P (True = absent)."""
        feats, pad = text.feats[:1], text.padding[:1]
        geo = torch.cat([self.tokens, self.cls[None]]).to(feats.device, feats.dtype)
        return (torch.cat([feats, geo[None]], dim=1),
                torch.cat([pad, pad.new_zeros(1, geo.shape[0])], dim=1))

    # -- pooling ---------------------------------------------------------------------------------
    @classmethod
    def merge(cls, concepts: Sequence["Concept"], name: str | None = None) -> "Concept":
        """Pool the exemplars of several concepts (1-3 reference images in all) made with one
        model. Their phrases must agree (or be absent); the CLS tokens are averaged."""
        concepts = list(concepts)
        if not concepts or not all(isinstance(c, Concept) for c in concepts):
            raise InputError("Concept.merge needs a list of Concepts")
        models = {c.model_id for c in concepts}
        if len(models) > 1:
            raise InputError(f"cannot merge concepts made with different models ({', '.join(sorted(models))})")
        texts = {c.text for c in concepts if c.text is not None}
        if len(texts) > 1:
            raise InputError(f"cannot merge concepts with different phrases: {sorted(texts)}")
        sources = [s for c in concepts for s in c.sources]
        images = {s.image_id for s in sources}
        if len(images) > MAX_REFERENCE_IMAGES:
            raise InputError(f"a concept pools exemplars from at most {MAX_REFERENCE_IMAGES} "
                             f"reference images, these come from {len(images)}")
        return cls(text=texts.pop() if texts else None,
                   tokens=torch.cat([c.tokens for c in concepts]),
                   labels=torch.cat([c.labels for c in concepts]),
                   cls=torch.stack([c.cls for c in concepts]).mean(0),
                   sources=sources, model_id=concepts[0].model_id,
                   name=name or concepts[0].name)

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """safetensors (tokens, labels, cls) + JSON metadata, written atomically."""
        meta = {"text": self.text, "name": self.name, "model_id": self.model_id,
                "sources": [asdict(s) for s in self.sources]}
        tensors = {"tokens": self.tokens.float().contiguous(), "labels": self.labels.long(),
                   "cls": self.cls.float().contiguous()}
        metadata = {"format": FORMAT, "version": VERSION, "concept": json.dumps(meta)}
        return atomic_write(path, lambda tmp: st.save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path, model=None) -> "Concept":
        """Read a saved concept; with ``model``, refuse it unless it was made with that model."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: concept file not found")
        try:
            with st.safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own types for every malformed header
            raise InputError(f"{path}: not a concept file ({type(e).__name__})") from None
        if metadata.get("format") != FORMAT:
            raise InputError(f"{path}: not a concept file (made by `conceptseg concept make` "
                             "or Concept.save)")
        if metadata.get("version") != VERSION:
            raise InputError(f"{path}: concept format version {metadata.get('version')!r}, "
                             f"this conceptseg reads {VERSION}")
        try:
            meta = json.loads(metadata["concept"])
            sources = [ConceptSource(s["image_id"], tuple(s["image_size"]), s["boxes"], s["labels"])
                       for s in meta["sources"]]
            concept = cls(text=meta["text"], tokens=tensors["tokens"], labels=tensors["labels"],
                          cls=tensors["cls"], sources=sources, model_id=meta["model_id"],
                          name=meta.get("name"))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: damaged concept metadata") from None
        t, lab, c = concept.tokens, concept.labels, concept.cls
        if t.dim() != 2 or lab.shape != (t.shape[0],) or c.shape != (t.shape[1],):
            raise InputError(f"{path}: damaged concept tensors")
        if model is not None:
            concept.check_model(model)
        return concept


def encode_concept(model: Sam3Detector, image: ImageFeatures, image_size: tuple[int, int],
                   image_id: str | None, text: str | None = None,
                   exemplars: Sequence[Exemplar] = (), name: str | None = None) -> Concept:
    """Encode exemplar boxes (pixel xyxy, with labels; clipped to the image) on the image whose
    detector features are ``image`` (one row), keeping the phrase ``text`` beside them."""
    if text is not None:
        text = validate_text(text)
    exemplars = list(exemplars)
    if text is None and not exemplars:
        raise InputError("a concept needs a phrase, exemplar boxes, or both")
    H, W = image_size
    boxes, labels = validate_exemplars(exemplars, W, H)
    pixels = [list(box) for box, _ in clip_exemplars(exemplars, W, H)]
    dev = image.levels[-1].device
    with torch.inference_mode():
        geo, _ = model.geometry_encoder(
            image.levels[-1][:1].float(), image.pos[-1][:1].float(), boxes.to(dev)[None],
            labels.to(dev)[None], torch.zeros(1, boxes.shape[0], dtype=torch.bool, device=dev))
    geo = geo[0].float().cpu().clone()
    return Concept(text=text, tokens=geo[:-1], labels=labels.clone(), cls=geo[-1],
                   sources=[ConceptSource(image_id, (H, W), pixels, labels.tolist())],
                   model_id=model_fingerprint(model), name=name)


def stack_prompts(rows: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths (each 1 x P_i x C with padding 1 x P_i) -> one batch
    B x max P x C, padded at the end (padding True there)."""
    width = max(p.shape[1] for p, _ in rows)
    prompts, pads = [], []
    for p, pad in rows:
        extra = width - p.shape[1]
        prompts.append(torch.cat([p, p.new_zeros(p.shape[0], extra, p.shape[2])], dim=1))
        pads.append(torch.cat([pad, pad.new_ones(pad.shape[0], extra)], dim=1))
    return torch.cat(prompts), torch.cat(pads)
