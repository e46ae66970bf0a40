"""A second, independent renderer of shape scenes: the held-out measure of generalisation.

**Never used for training.** It shares only the vocabulary with the first engine (the
8 colours x 6 shapes x 2 sizes x 2 fills of :mod:`conceptseg.data.phrases`) and none of its
drawing code (``shapes``, ``scene``, ``scene_sampling``, ``synthetic*``, ``coco_export`` are
not imported: a test checks it). Its scenes differ on purpose: image sizes from 320x240 to
640x480, absolute object sizes (a few percent to a third of the shorter side; "small" and
"large" only relative to the other objects of the same image, rule in :mod:`.layout`), other
backgrounds (gradients, noise, stripes, checkers, paper), any rotation, occlusion, other
anti-aliasing (aliased, or supersampled 2-5x with LANCZOS), outlines, other colour shades and
stripes. Each datapoint records its phrase form ("colour+object", "colour+shape",
"size+colour+shape", "fill+shape", "shape"); every form has one positive and one hard negative
(an attribute combination absent from the image) per scene.

The written ``annotations.json`` carries ``info.never_train = true``; the training data path
refuses such files (:func:`refuse_training`). ``conceptseg eval --data foreign:N`` writes the
split (seed ``splits.FOREIGN_TEST_SEED``) and scores a model on it.
"""

from __future__ import annotations

from ...errors import InputError
from .export import NEVER_TRAIN_KEY, scene_seed, write_foreign_coco
from .layout import FORMS, ForeignScene, render_foreign

__all__ = ["FORMS", "ForeignScene", "render_foreign", "write_foreign_coco", "scene_seed",
           "refuse_training", "NEVER_TRAIN_KEY"]


def refuse_training(doc, path) -> None:
    """Raise :class:`InputError` when a COCO document is marked ``never_train`` (the second
    renderer's held-out data)."""
    info = doc.get("info") if isinstance(doc, dict) else None
    if isinstance(info, dict) and info.get(NEVER_TRAIN_KEY):
        raise InputError(f"{path}: this dataset is marked never_train (the second renderer's "
                         "held-out scenes measure generalisation); it cannot be trained on")
