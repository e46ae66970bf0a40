"""The synthetic scenes as a torch Dataset of (image, noun phrase, exhaustive targets) items,
and their collate function."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from .phrases import Datapoint
from .scene import Scene, make_scene
from .scene_sampling import SceneConfig, derive_seed
from .splits import TRAIN_SEED

__all__ = ["SyntheticConceptDataset", "collate_concepts", "box_xyxy_to_cxcywh_norm"]


def box_xyxy_to_cxcywh_norm(boxes: np.ndarray, H: int, W: int) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / (2 * W), (b[:, 1] + b[:, 3]) / (2 * H),
                     (b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H], 1)


class SyntheticConceptDataset(Dataset):
    """On-the-fly synthetic PCS dataset.  Item ``i`` is ``make_scene(derive_seed(seed, i))``.

    Each item: ``{"image": float (3,H,W) in [0,1], "image_id": i, "queries": [{"text": str,
    "boxes": (N,4) normalized cxcywh, "masks": (N,H,W) bool, "presence": float 0/1,
    "instance_ids": (N,) long}, ...]}`` with ``phrases_per_image`` queries (positives and
    negatives balanced by ``positive_fraction`` when available; sampled with replacement if the
    scene has fewer datapoints; all datapoints if ``None``).
    """

    def __init__(self, num_images: int, seed: int = TRAIN_SEED, image_size=224, cfg: SceneConfig | None = None,
                 phrases_per_image: int | None = 4, split: str | None = None, cache: bool = False,
                 positive_fraction: float = 0.5):
        self.num_images, self.seed, self.image_size = int(num_images), int(seed), image_size
        self.cfg = replace(cfg or SceneConfig(), **({"split": split} if split else {}))
        self.phrases_per_image, self.positive_fraction = phrases_per_image, positive_fraction
        self._cache: dict[int, Scene] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int) -> Scene:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        s = make_scene(derive_seed(self.seed, index), self.image_size, self.cfg)
        if self._cache is not None:
            self._cache[index] = s
        return s

    def _select(self, scene: Scene, index: int) -> list[Datapoint]:
        dps, P = scene.datapoints, self.phrases_per_image
        if P is None:
            return list(dps)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, 1]))
        pos = [d for d in dps if d.presence]
        neg = [d for d in dps if not d.presence]
        n_pos = min(len(pos), int(round(P * self.positive_fraction)))
        n_neg = min(len(neg), P - n_pos)
        n_pos = min(len(pos), P - n_neg)
        out = [pos[i] for i in rng.permutation(len(pos))[:n_pos]] + [neg[i] for i in rng.permutation(len(neg))[:n_neg]]
        while len(out) < P and dps:
            out.append(dps[int(rng.integers(len(dps)))])
        return [out[i] for i in rng.permutation(len(out))]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        scene = self.scene(index)
        H, W = scene.image.shape[:2]
        chw = np.empty((3, H, W), np.float32)
        for k in range(3):  # numpy HWC uint8 -> CHW float (cheaper than torch permute + float on busy CPUs)
            np.multiply(scene.image[..., k], np.float32(1.0 / 255.0), out=chw[k])
        image = torch.from_numpy(chw)
        queries = []
        for dp in self._select(scene, index):
            ids = list(dp.instance_ids)
            boxes = box_xyxy_to_cxcywh_norm([scene.instances[i].box for i in ids], H, W)
            masks = np.stack([scene.instances[i].mask for i in ids]) if ids else np.zeros((0, H, W), bool)
            queries.append({"text": dp.phrase, "boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks),
                            "presence": torch.tensor(float(dp.presence)),
                            "instance_ids": torch.tensor(ids, dtype=torch.long)})
        return {"image": image, "image_id": index, "queries": queries}


def collate_concepts(batch: list[dict]) -> dict:
    """Stack images; flatten queries to one (image, phrase) pair each with ``image_index``."""
    texts, targets, image_index = [], [], []
    for b, item in enumerate(batch):
        for q in item["queries"]:
            texts.append(q["text"])
            targets.append({k: v for k, v in q.items() if k != "text"})
            image_index.append(b)
    return {"images": torch.stack([it["image"] for it in batch]), "image_ids": [it["image_id"] for it in batch],
            "texts": texts, "targets": targets, "image_index": torch.tensor(image_index, dtype=torch.long),
            "presence": torch.stack([t["presence"] for t in targets]) if targets else torch.zeros(0)}
