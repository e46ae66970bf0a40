"""Frame and text features of a video session: the ViT trunk once per frame feeding both necks
(detector and tracker), kept for the last few frames, and the text features of the concepts'
phrases. Caches only: dropping them never changes a result."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch

from ...model.detector import ImageFeatures, TextFeatures
from ...model.video_model import VideoModel
from ...text.tokenizer import ClipTokenizer
from ...tracker.tracker import TrackerFeatures
from ...video.preprocess import to_model_input
from ...video.source import VideoSource

__all__ = ["FeatureCache", "TEXT_CACHE"]

TEXT_CACHE = 16  # phrases whose text features are kept


class FeatureCache:
    """Features of ``source``'s frames under ``model`` (``precision`` "fp32" or "bf16"
    autocast; outputs are fp32), the ``size`` most recent frames kept."""

    def __init__(self, model: VideoModel, source: VideoSource, device: torch.device,
                 precision: str, size: int = 2):
        self.model = model
        self.source = source
        self.device = device
        self.precision = precision
        self.size = max(1, int(size))
        self.tokenizer = ClipTokenizer(context_length=model.config.text.context_length)
        self.frames: OrderedDict[int, tuple[ImageFeatures, TrackerFeatures]] = OrderedDict()
        self._text: dict[str, TextFeatures] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def clear(self) -> None:
        self.frames.clear()
        self._text.clear()

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def frame(self, t: int) -> tuple[ImageFeatures, TrackerFeatures]:
        """(detector features, tracker features) of frame t, batch 1."""
        hit = self.frames.get(t)
        if hit is not None:
            self.frames.move_to_end(t)
            return hit
        x = to_model_input(self.source.preprocess(t, self.model.config.vision.image_size))
        x = x[None].to(self.device)
        with self.autocast():
            trunk = self.model.trunk(x)
            det = self.model.detector_features(trunk)
        det = ImageFeatures([v.float() for v in det.levels], [p.float() for p in det.pos])
        trk = self.model.tracker_features(trunk.float())
        self.frames[t] = (det, trk)
        while len(self.frames) > self.size:
            self.frames.popitem(last=False)
        return det, trk

    def text(self, text: str | None) -> TextFeatures:
        """Text features of the prompt (None: the official "visual" placeholder)."""
        text = text if text is not None else "visual"
        tf = self._text.get(text)
        if tf is None:
            tokens = self.tokenizer([text]).to(self.device)
            with self.autocast():
                tf = self.model.detector.encode_text(tokens)
            tf = TextFeatures(tf.feats.float(), tf.padding, tf.embeds.float())
            self._text[text] = tf  # every concept's phrase (a session has a few)
            while len(self._text) > TEXT_CACHE:
                self._text.pop(next(iter(self._text)))
        return tf
