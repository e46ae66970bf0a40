"""The LLM tool's work, free of any protocol: one model, the images it was shown (bounded
cache), ``segment`` and ``refine`` on argument dictionaries validated against
:mod:`.tool_schema`, answers shaped for a language model (:mod:`.tool_answers`).

Calls run one at a time (one lock; the image predictor holds one encoded image). Each call
has a :class:`Deadline`, checked between its stages (waiting for the model, decoding, the
image encoder, the decoder), so a call over budget stops at the next stage boundary.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConceptSegError, InputError
from ..inference.image import ImagePredictor, image_fingerprint
from ..inference.prompts import validate_text
from ..inference.results import Prediction
from .tool_answers import (
    clip_box,
    model_label,
    phrase_answer,
    polygon_tolerance,
    refine_answer,
)
from .tool_images import ImageLimits, read_image

CACHE_BYTES = 1 << 30  # decoded images and kept masks held for follow-up calls, in total
CACHE_IMAGES = 8  # ... and at most this many images
PHRASES_KEPT = 16  # per image, the last results kept for refine_instance's {"phrase", "id"}
MASK_BUDGET = 2 << 30  # bytes of float32 full-size mask logits one phrase may decode at once


class Deadline:
    """A call's time budget: :meth:`check` raises once it is spent."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self, stage: str) -> None:
        if time.monotonic() > self.end:
            raise ConceptSegError(f"the call ran out of its time budget of {self.seconds:g} s "
                                  f"({stage}); try fewer phrases or a smaller image")


@dataclass
class _Seen:
    """One image the tool was shown, kept for follow-up calls by id."""

    rgb: np.ndarray  # H x W x 3 uint8
    found: OrderedDict[str, Prediction] = field(default_factory=OrderedDict)  # last result
    # per phrase (listed instances only), for refine_instance's {"phrase", "id"}

    def nbytes(self) -> int:
        return self.rgb.nbytes + sum(p.masks.numel() for p in self.found.values())


class ToolEngine:
    """segment_concepts / refine_instance over one loaded model (a VideoModel gives refine)."""

    def __init__(self, model, *, shipped: bool, limits: ImageLimits | None = None,
                 device: str | None = None, precision: str = "fp32",
                 cache_bytes: int = CACHE_BYTES, cache_images: int = CACHE_IMAGES):
        self.predictor = ImagePredictor(model, device=device, precision=precision)
        self.can_refine = hasattr(model, "tracker")  # a VideoModel: the SAM heads for refine
        self.label = model_label(shipped, sum(p.numel() for p in model.parameters()))
        self.shipped = shipped
        self.limits = limits or ImageLimits()
        self.cache_bytes, self.cache_images = cache_bytes, cache_images
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    # -- images ---------------------------------------------------------------------------
    def _image(self, args: dict, deadline: Deadline) -> tuple[str, _Seen]:
        given = [k for k in ("image_path", "image_base64", "image_id") if args.get(k) is not None]
        if len(given) != 1:
            raise InputError("give exactly one of image_path, image_base64, image_id"
                             + (f" (got {', '.join(given)})" if given else ""))
        if given[0] == "image_id":
            image_id = str(args["image_id"])
            if image_id not in self._seen:
                raise InputError(f"unknown or expired image_id {image_id!r}: send the image "
                                 "again by image_path or image_base64")
        else:
            rgb, _ = read_image(args, self.limits)
            image_id = image_fingerprint(rgb)
            if image_id not in self._seen:
                self._seen[image_id] = _Seen(rgb)
        self._seen.move_to_end(image_id)
        deadline.check("reading the image")
        return image_id, self._seen[image_id]

    def _encode(self, image_id: str, seen: _Seen, notes: list[str], deadline: Deadline) -> None:
        if self.predictor.image_id != image_id:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.predictor.set_image(seen.rgb)
            notes.extend(str(w.message) for w in caught)
        deadline.check("encoding the image")

    def _trim_cache(self) -> None:
        while len(self._seen) > 1 and (len(self._seen) > self.cache_images or sum(
                s.nbytes() for s in self._seen.values()) > self.cache_bytes):
            self._seen.popitem(last=False)

    def _head(self, image_id: str, seen: _Seen, notes: list[str], output: str) -> dict:
        h, w = seen.rgb.shape[:2]
        return {"image": {"id": image_id, "width": w, "height": h},
                "model": self.label,
                "polygon_tolerance": polygon_tolerance(w, h) if output == "polygons" else None,
                "notes": notes}

    @contextlib.contextmanager
    def _locked(self, deadline: Deadline):
        """The model, for one call at a time, waited for within the call's budget."""
        if not self._lock.acquire(timeout=deadline.left()):
            raise ConceptSegError(f"the model stayed busy for the whole time budget of "
                                  f"{deadline.seconds:g} s (other calls running)")
        try:
            yield
        finally:
            self._lock.release()

    # -- tools ------------------------------------------------------------------------------
    def segment(self, args: dict, deadline: Deadline) -> dict:
        phrases = list(dict.fromkeys(validate_text(p).strip() for p in args["phrases"]))
        threshold = float(args.get("threshold", 0.5))
        max_instances = int(args.get("max_instances", 20))
        output = args.get("output", "polygons")
        with self._locked(deadline):
            image_id, seen = self._image(args, deadline)
            h, w = seen.rgb.shape[:2]
            exemplars = [(clip_box(e["box"], w, h, f"exemplar {i}"),
                          e.get("label", "positive") == "positive")
                         for i, e in enumerate(args.get("exemplars") or [])]
            notes: list[str] = []
            cap = max(1, MASK_BUDGET // (4 * h * w))  # masks are upsampled as float32
            if max_instances > cap:
                notes.append(f"at most {cap} instances per phrase are listed on an image of "
                             f"{w}x{h} pixels (memory); count still counts them all")
                max_instances = cap
            self._encode(image_id, seen, notes, deadline)
            # batched: one decoder pass; full-size masks only for the max_instances best
            preds = self.predictor.predict(text=phrases, exemplars=exemplars,
                                           threshold=threshold, max_instances=max_instances)
            deadline.check("finding the instances")
            results = []
            for phrase, pred in zip(phrases, preds):
                results.append(phrase_answer(pred, threshold, max_instances, output))
                seen.found[phrase] = pred
                seen.found.move_to_end(phrase)
                while len(seen.found) > PHRASES_KEPT:
                    seen.found.popitem(last=False)
            self._trim_cache()
            if self.shipped:
                notes.append(SHIPPED_NOTE)
            return {**self._head(image_id, seen, notes, output), "threshold": threshold,
                    "results": results}

    def refine(self, args: dict, deadline: Deadline) -> dict:
        if not self.can_refine:
            raise InputError("refine_instance needs a checkpoint with tracker weights (such as "
                             "sam3.pt or the shipped model); this one is an image-only model")
        output = args.get("output", "polygons")
        with self._locked(deadline):
            image_id, seen = self._image(args, deadline)
            h, w = seen.rgb.shape[:2]
            instance = None
            if args.get("instance") is not None:
                phrase, idx = str(args["instance"]["phrase"]).strip(), int(args["instance"]["id"])
                if phrase not in seen.found:
                    raise InputError(f"no segment_concepts result for {phrase!r} on image "
                                     f"{image_id}: call segment_concepts with that phrase first")
                pred = seen.found[phrase]
                if not 0 <= idx < len(pred):
                    raise InputError(f"{phrase!r} has no instance {idx} on this image (ids "
                                     + (f"0..{len(pred) - 1})" if len(pred) else "none: nothing "
                                        "was found)"))
                instance = (pred, idx)
            box = clip_box(args["box"], w, h, "box") if args.get("box") is not None else None
            points, labels = args.get("points"), args.get("labels")
            if instance is None and box is None and not points:
                raise InputError("give an instance (phrase + id), a box, or points")
            notes: list[str] = []
            self._encode(image_id, seen, notes, deadline)
            ref = self.predictor.refine(points=points or None, labels=labels if points else None,
                                        box=box, instance=instance)
            deadline.check("refining")
            self._trim_cache()
            if self.shipped:
                notes.append(SHIPPED_NOTE)
            return {**self._head(image_id, seen, notes, output),
                    **refine_answer(ref, output, instance)}


SHIPPED_NOTE = ("This is conceptseg's small shipped demo model: it knows only the synthetic "
                "vocabulary of coloured shapes (e.g. 'red circle', 'striped blue square', "
                "'yellow object'); on real photographs its answers mean nothing. Start the "
                "server with --checkpoint sam3.pt for open-vocabulary segmentation.")

