"""Presence on phrases outside the vocabulary (issue 14, item 7): a model that knows only the
synthetic engines' words should give presence near 0 to every other noun.

``oov_presence`` runs a model over scenes of the first engine's held-out test split
(``splits.TEST_SEED``) with the 200 nouns of :func:`conceptseg.data.vocabulary.measure_nouns`
(held out of ``--oov-negatives`` training) and reports, per noun, the highest presence over the
scenes; the headline is the share of nouns whose highest presence is at most ``limit``
(target: 95 % at 0.05)."""

from __future__ import annotations

import numpy as np

from ..data.scene import make_scene
from ..data.scene_sampling import SceneConfig, derive_seed
from ..data.splits import TEST_SEED
from ..data.vocabulary import measure_nouns
from ..inference.image import ImagePredictor

__all__ = ["oov_presence"]


def oov_presence(model, num_images: int = 8, words: tuple[str, ...] | None = None,
                 limit: float = 0.05, image_size: int | None = None) -> dict:
    """{"share_at_most_limit", "limit", "num_words", "num_images", "median", "worst": [(word,
    presence)...10], "presence": {word: highest presence}} over ``num_images`` test scenes."""
    words = tuple(words or measure_nouns())
    size = image_size or model.config.vision.image_size
    pred = ImagePredictor(model)
    best = np.zeros(len(words))
    for i in range(num_images):
        scene = make_scene(derive_seed(TEST_SEED, i), size, SceneConfig(split="test"))
        pred.set_image(scene.image)
        results = pred.predict(text=list(words), threshold=0.5)
        best = np.maximum(best, [float(r.presence) for r in results])
    order = np.argsort(-best)
    return {"share_at_most_limit": float((best <= limit).mean()), "limit": limit,
            "num_words": len(words), "num_images": num_images, "median": float(np.median(best)),
            "worst": [(words[k], round(float(best[k]), 4)) for k in order[:10]],
            "presence": {w: float(p) for w, p in zip(words, best)}}
