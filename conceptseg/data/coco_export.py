"""Write synthetic scenes as an SA-Co/Gold-style COCO dataset (PNG images and one
``annotations.json``), and the small writers the video dataset shares."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write
from ..ops.masks import rle_encode
from ..runtime import progress as progress_bar
from .scene import make_scene
from .scene_sampling import SceneConfig, derive_seed
from .splits import TRAIN_SEED

__all__ = ["write_coco", "mask_to_rle", "atomic_png", "atomic_json", "box_xywh"]


def mask_to_rle(mask: np.ndarray) -> dict:
    """H x W bool -> COCO RLE with str counts."""
    return rle_encode(mask[None])[0]


def atomic_png(path: Path, image: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def atomic_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj)))


def box_xywh(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def write_coco(out_dir, num_images: int, seed: int = TRAIN_SEED, image_size=224, cfg: SceneConfig | None = None,
               split: str = "train", progress: bool = True) -> Path:
    """Write ``images/*.png`` and an SA-Co/Gold-style ``annotations.json``; returns the JSON path.

    ``images`` entries are (image, noun phrase) datapoints (``text_input``, ``original_img_id``);
    negatives have no annotations.  Image ``i`` equals ``SyntheticConceptDataset(seed=seed)[i]``.
    """
    cfg = replace(cfg or SceneConfig(), split=split)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in progress_bar(range(num_images), desc=f"synthetic {split} images", disable=not progress):
        scene = make_scene(derive_seed(seed, i), image_size, cfg)
        H, W = scene.image.shape[:2]
        fname = f"images/{i:06d}.png"
        atomic_png(out / fname, scene.image)
        rles = {}
        for dp in scene.datapoints:
            dp_id = len(images) + 1
            images.append({"id": dp_id, "file_name": fname, "height": H, "width": W, "text_input": dp.phrase,
                           "original_img_id": i, "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1})
            for j in dp.instance_ids:
                inst = scene.instances[j]
                if j not in rles:
                    rles[j] = mask_to_rle(inst.mask)
                annotations.append({"id": len(annotations) + 1, "image_id": dp_id, "bbox": box_xywh(inst.box),
                                    "area": int(inst.area), "segmentation": rles[j], "iscrowd": 0,
                                    "category_id": 1, "instance_index": j,
                                    "visible_fraction": round(float(inst.visible_fraction), 4)})
    info = {"description": f"conceptseg synthetic shapes ({split})", "seed": seed, "split": split,
            "held_out_pairs": sorted(map(list, cfg.held_out_pairs))}
    path = out / "annotations.json"
    atomic_json(path, {"info": info, "images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "object", "supercategory": "object"}]})
    return path
