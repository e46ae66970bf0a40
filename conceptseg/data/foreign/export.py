"""Write second-renderer scenes as an SA-Co/Gold-style COCO dataset (PNG images and one
``annotations.json``, the layout of :mod:`conceptseg.data.coco_export`), each datapoint
carrying its ``phrase_form``; the file is marked ``never_train`` (see the package docstring)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ...atomic import atomic_write
from ...ops.masks import rle_encode
from ...runtime import progress as progress_bar
from ..splits import FOREIGN_TEST_SEED
from .layout import FORMS, LARGE_FACTOR, SMALL_BASE, render_foreign

__all__ = ["write_foreign_coco", "scene_seed", "NEVER_TRAIN_KEY"]

NEVER_TRAIN_KEY = "never_train"  # info flag the training data path refuses


def scene_seed(seed: int, index: int) -> int:
    """Seed of image ``index`` of a split starting at ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def write_foreign_coco(out_dir, num_images: int, seed: int = FOREIGN_TEST_SEED,
                       progress: bool = True) -> Path:
    """``images/*.png`` and ``annotations.json``; returns the JSON path. Same seed, same bytes."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in progress_bar(range(num_images), desc="foreign renderer images", disable=not progress):
        scene = render_foreign(scene_seed(seed, i))
        H, W = scene.image.shape[:2]
        fname = f"images/{i:06d}.png"
        atomic_write(out / fname, lambda tmp, im=scene.image: Image.fromarray(im).save(tmp, format="PNG"))
        rles: dict[int, dict] = {}
        for dp in scene.datapoints:
            dp_id = len(images) + 1
            images.append({"id": dp_id, "file_name": fname, "height": H, "width": W,
                           "text_input": dp.phrase, "phrase_form": dp.form, "original_img_id": i,
                           "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1})
            for j in dp.instance_ids:
                obj = scene.objects[j]
                if j not in rles:
                    rles[j] = rle_encode(obj.mask[None])[0]
                x1, y1, x2, y2 = obj.box
                annotations.append({"id": len(annotations) + 1, "image_id": dp_id,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(obj.mask.sum()),
                                    "segmentation": rles[j], "iscrowd": 0, "category_id": 1,
                                    "instance_index": j, "visible_fraction": obj.visible_fraction})
    info = {"description": "conceptseg second (foreign) renderer: held-out measure of "
                           "generalisation, never used for training",
            "renderer": "foreign", NEVER_TRAIN_KEY: True, "seed": seed, "phrase_forms": list(FORMS),
            "size_rule": f"per image: small diameters in [s, 1.25 s], large in "
                         f"[{LARGE_FACTOR[0]:g} s, min({LARGE_FACTOR[1]:g} s, 33 % of the shorter "
                         f"side)], s in {list(SMALL_BASE)} of the shorter side"}
    path = out / "annotations.json"
    doc = {"info": info, "images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc)))
    return path
