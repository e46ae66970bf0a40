"""Synthetic concept data engine: procedurally rendered shape scenes and clips with exhaustive
concept labels, one entry point for the parts that live in their own modules:

* :mod:`~conceptseg.data.scene_sampling`: :class:`SceneConfig`, :func:`derive_seed` and the random
  draws shared by images and videos (objects, distractors, noise, datapoints);
* :mod:`~conceptseg.data.scene`: :func:`make_scene` renders one scene (:class:`Scene`);
* :mod:`~conceptseg.data.concept_dataset`: :class:`SyntheticConceptDataset`,
  :func:`collate_concepts`;
* :mod:`~conceptseg.data.coco_export`: :func:`write_coco` (SA-Co/Gold-style COCO);
* :mod:`~conceptseg.data.synthetic_video`: :func:`make_video`, :func:`write_video_dataset`.

Everything is a pure function of the seed and the config: the same seed + config gives identical
bytes. Seeds of the splits are in :mod:`conceptseg.data.splits`.
"""

from __future__ import annotations

from .coco_export import mask_to_rle, write_coco
from .concept_dataset import (
    SyntheticConceptDataset,
    box_xyxy_to_cxcywh_norm,
    collate_concepts,
)
from .phrases import DEFAULT_HELD_OUT_PAIRS, Datapoint
from .scene import Instance, Scene, make_scene
from .scene_sampling import SceneConfig, derive_seed
from .synthetic_video import Video, VideoObject, make_video, write_video_dataset

__all__ = [
    "DEFAULT_HELD_OUT_PAIRS", "SceneConfig", "Instance", "Scene", "make_scene", "derive_seed",
    "SyntheticConceptDataset", "collate_concepts", "write_coco", "Datapoint", "mask_to_rle",
    "box_xyxy_to_cxcywh_norm", "Video", "VideoObject", "make_video", "write_video_dataset",
]
