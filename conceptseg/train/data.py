"""Batches for training: the synthetic concept engine (infinite, curriculum) or a COCO JSON
(epochs). A batch is a pure function of the global step, so resuming at step s reproduces the
exact data that an uninterrupted run would have seen ("data position" = step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Sam3Config
from ..data.concept_dataset import SyntheticConceptDataset, box_xyxy_to_cxcywh_norm
from ..data.phrases import ATTRIBUTES, VALUES
from ..data.scene_sampling import SceneConfig
from ..data.splits import TRAIN_SEED
from ..data.vocabulary import replace_negatives
from ..errors import InputError
from ..text.tokenizer import ClipTokenizer
from .losses import resize_masks

__all__ = ["mask_resolution", "CurriculumStage", "parse_curriculum", "SyntheticStream",
           "CocoStream", "Collator"]


def mask_resolution(cfg: Sam3Config) -> tuple[int, int]:
    """Side of pred_masks / semantic_seg: the ViT grid times the finest FPN level in use."""
    used = cfg.neck_scales[: len(cfg.neck_scales) - cfg.scalp]
    s = int(round(cfg.vision.grid * max(used)))
    return s, s


@dataclass(frozen=True)
class CurriculumStage:
    start: int  # first step of the stage
    max_attributes: int = 4
    negative_mode: str = "mixed"


def parse_curriculum(spec: str | None) -> list[CurriculumStage]:
    """``"0:1:easy,1500:2:mixed,4000:4:hard"`` -> stages (step:max_attributes:negative_mode).
    Empty / None: one stage with the engine defaults (4 attributes, mixed negatives)."""
    if not spec:
        return [CurriculumStage(0)]
    stages = []
    for part in spec.split(","):
        bits = part.strip().split(":")
        try:
            start, attrs = int(bits[0]), int(bits[1]) if len(bits) > 1 else 4
            mode = bits[2] if len(bits) > 2 else "mixed"
        except ValueError:
            raise InputError(f"--curriculum: cannot parse {part!r}; use step:max_attributes:"
                             "easy|hard|mixed, comma separated") from None
        if not 1 <= attrs <= 4 or mode not in ("easy", "hard", "mixed") or start < 0:
            raise InputError(f"--curriculum: bad stage {part!r} (attributes 1..4, negatives "
                             "easy|hard|mixed, step >= 0)")
        stages.append(CurriculumStage(start, attrs, mode))
    stages.sort(key=lambda s: s.start)
    if stages[0].start != 0:
        stages.insert(0, CurriculumStage(0))
    return stages


class SyntheticStream:
    """Step s uses images s*B .. s*B+B-1 of an endless synthetic dataset, rendered with the
    curriculum stage active at step s."""

    epoch_based = False

    def __init__(self, image_size: int, batch_images: int, phrases_per_image: int,
                 seed: int = TRAIN_SEED,
                 curriculum: list[CurriculumStage] | None = None, scene: SceneConfig | None = None,
                 token_grid: int | None = None, exemplar_prob: float = 0.0, oov_negatives: float = 0.0):
        self.image_size, self.batch_images = image_size, batch_images
        self.exemplar_prob = exemplar_prob  # share of rows prompted with an exemplar box
        self.oov_negatives = oov_negatives  # share of negatives given out-of-vocabulary words
        self.token_grid = token_grid  # also label the ViT tokens with attributes (--attr-aux)
        self.phrases_per_image, self.seed = phrases_per_image, seed
        self.curriculum = curriculum or [CurriculumStage(0)]
        self.scene = scene or SceneConfig()
        self._ds: dict[CurriculumStage, SyntheticConceptDataset] = {}

    def stage(self, step: int) -> CurriculumStage:
        cur = self.curriculum[0]
        for s in self.curriculum:
            if s.start <= step:
                cur = s
        return cur

    def dataset(self, step: int) -> SyntheticConceptDataset:
        st = self.stage(step)
        if st not in self._ds:
            cfg = replace(self.scene, max_attributes=st.max_attributes, negative_mode=st.negative_mode)
            self._ds[st] = SyntheticConceptDataset(2 ** 62, self.seed, self.image_size, cfg,
                                                   self.phrases_per_image, cache=True)
        return self._ds[st]

    def batch(self, step: int) -> list[dict]:
        ds = self.dataset(step)
        out = []
        for j in range(self.batch_images):
            i = step * self.batch_images + j
            item = ds[i]
            # every instance of the scene (for recognition queries), in instance order; the
            # dataset caches the scene it just rendered, we take it out again
            scene = ds._cache.pop(i)
            H, W = scene.image.shape[:2]
            item["all_boxes"] = torch.from_numpy(
                box_xyxy_to_cxcywh_norm([inst.box for inst in scene.instances], H, W))
            if self.exemplar_prob > 0:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 13]))
                add_exemplars(item, scene, rng, self.exemplar_prob)
            if self.oov_negatives > 0:
                replace_negatives(item["queries"], np.random.default_rng(
                    np.random.SeedSequence([self.seed, i, 19])), self.oov_negatives)
            if self.token_grid:
                item["tok_owner"] = token_owners(scene.instances, self.token_grid)
                item["inst_attrs"] = attribute_indices(scene.instances)
            out.append(item)
        return out

    def describe(self, step: int) -> dict:
        st = self.stage(step)
        return {"images_seen": step * self.batch_images, "max_attributes": st.max_attributes,
                "negatives": st.negative_mode}


VISUAL_PROMPT = "visual"  # the official placeholder text of exemplar-only prompts


def add_exemplars(item: dict, scene, rng: np.random.Generator, prob: float) -> None:
    """Exemplar prompts, as SAM 3 trains them, for some rows of one image (in place):

    * a positive phrase row gets one of its instances' boxes as a positive exemplar (the
      targets stay the phrase's instances);
    * or the row becomes exemplar-only: text ``"visual"`` and the box of a random instance;
      its concept is then "the same kind of object", i.e. every instance with the same four
      attributes as the boxed one (the engine knows them exactly).
    """
    H, W = scene.image.shape[:2]
    for q in item["queries"]:
        if rng.random() >= prob:
            continue
        if rng.random() < 0.5 and len(q["instance_ids"]):
            j = int(q["instance_ids"][int(rng.integers(len(q["instance_ids"])))])
        elif scene.instances:
            j = int(rng.integers(len(scene.instances)))
            a = scene.instances[j].attributes
            ids = [k for k, inst in enumerate(scene.instances) if inst.attributes == a]
            q["text"] = VISUAL_PROMPT
            q["instance_ids"] = torch.tensor(ids, dtype=torch.long)
            q["boxes"] = torch.from_numpy(
                box_xyxy_to_cxcywh_norm([scene.instances[k].box for k in ids], H, W))
            q["masks"] = torch.from_numpy(np.stack([scene.instances[k].mask for k in ids]))
            q["presence"] = torch.tensor(1.0)
        else:
            continue
        q["exemplar"] = torch.from_numpy(
            box_xyxy_to_cxcywh_norm([scene.instances[j].box], H, W)).float().view(1, 4)


def token_owners(instances, grid: int) -> torch.Tensor:
    """grid x grid long: index of the instance covering at least half of each ViT token's
    pixels (visible masks), -1 where none does."""
    if not instances:
        return torch.full((grid, grid), -1, dtype=torch.long)
    cover = torch.stack([F.adaptive_avg_pool2d(torch.from_numpy(i.mask)[None, None].float(), grid)[0, 0]
                         for i in instances])
    best, arg = cover.max(0)
    return torch.where(best >= 0.5, arg, torch.full_like(arg, -1))


def attribute_indices(instances) -> torch.Tensor:
    """K x len(ATTRIBUTES) long: each instance's value index per attribute."""
    return torch.tensor([[VALUES[a].index(i.attributes[a]) for a in ATTRIBUTES] for i in instances],
                        dtype=torch.long).reshape(len(instances), len(ATTRIBUTES))


class CocoStream:
    """Epochs over a :class:`~conceptseg.train.coco.CocoConceptDataset` in a per-epoch shuffled
    order; step s is batch s mod steps_per_epoch of epoch s // steps_per_epoch (the last batch
    of an epoch may be smaller)."""

    epoch_based = True

    def __init__(self, dataset, batch_images: int, seed: int = TRAIN_SEED):
        self.ds, self.batch_images, self.seed = dataset, batch_images, seed
        self.steps_per_epoch = math.ceil(len(dataset) / batch_images)

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def batch(self, step: int) -> list[dict]:
        epoch, k = self.position(step)
        perm = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 7])).permutation(len(self.ds))
        out = []
        for i in perm[k * self.batch_images:(k + 1) * self.batch_images].tolist():
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, i, 11]))
            out.append(self.ds.item(int(i), rng))
        return out

    def is_epoch_end(self, step: int) -> bool:
        return (step + 1) % self.steps_per_epoch == 0

    def describe(self, step: int) -> dict:
        epoch, k = self.position(step)
        return {"epoch": epoch, "batch_in_epoch": k}


class Collator:
    """Items -> model inputs + loss targets (masks area-resized to the prediction grid)."""

    def __init__(self, mask_hw: tuple[int, int], context_length: int = 32):
        self.mask_hw = mask_hw
        self.tok = ClipTokenizer(context_length=context_length)
        self._cache: dict[str, torch.Tensor] = {}

    def tokens(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, row in zip(missing, self.tok(missing)):
                self._cache[t] = row
        return torch.stack([self._cache[t] for t in texts])

    def __call__(self, items: list[dict]) -> dict:
        texts, boxes, masks, presence, index, dn = [], [], [], [], [], []
        for b, it in enumerate(items):
            for q in it["queries"]:
                texts.append(q["text"])
                boxes.append(q["boxes"].float())
                masks.append(resize_masks(q["masks"], self.mask_hw))
                presence.append(float(q["presence"]))
                index.append(b)
                if "all_boxes" in it and "instance_ids" in q:
                    labels = torch.zeros(it["all_boxes"].shape[0])
                    labels[q["instance_ids"]] = 1.0
                    dn.append((it["all_boxes"].float(), labels))
        if not texts:
            raise InputError("a batch has no phrases")
        images = torch.stack([it["image"] for it in items])
        out = {
            "images": (images - 0.5) / 0.5,
            "tokens": self.tokens(texts),
            "image_index": torch.tensor(index, dtype=torch.long),
            "texts": texts,
            "boxes": boxes,
            "masks": masks,
            "presence": torch.tensor(presence),
        }
        ex = [q.get("exemplar") for it in items for q in it["queries"]]
        if any(e is not None for e in ex):
            # one positive exemplar box per row at most; rows without one are padding
            out["exemplar_boxes"] = torch.stack([e if e is not None else torch.zeros(1, 4) for e in ex])
            out["exemplar_padding"] = torch.tensor([[e is None] for e in ex])
        if all("tok_owner" in it for it in items):
            # per-token attribute labels of the ViT grid (indices into inst_attrs, or -1)
            owners, attrs, n = [], [], 0
            for it in items:
                o = it["tok_owner"]
                owners.append(torch.where(o >= 0, o + n, o))
                attrs.append(it["inst_attrs"])
                n += it["inst_attrs"].shape[0]
            out["tok_owner"] = torch.stack(owners)
            out["inst_attrs"] = torch.cat(attrs)
        if dn and len(dn) == len(texts):
            # recognition targets: every instance of the row's image, label 1 if it matches
            K = max(b.shape[0] for b, _ in dn)
            out["dn_boxes"] = torch.full((len(dn), K, 4), 0.5)
            out["dn_labels"] = torch.zeros(len(dn), K)
            out["dn_valid"] = torch.zeros(len(dn), K, dtype=torch.bool)
            for r, (bx, lab) in enumerate(dn):
                out["dn_boxes"][r, : len(lab)] = bx
                out["dn_labels"][r, : len(lab)] = lab
                out["dn_valid"][r, : len(lab)] = True
        return out


class _StepBatches(torch.utils.data.Dataset):
    """Item k = the collated batch of step ``start + k`` (a pure function of the step)."""

    def __init__(self, stream, collate: Collator, start: int, end: int):
        self.stream, self.collate, self.start, self.end = stream, collate, start, end

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, k: int) -> dict:
        return self.collate(self.stream.batch(self.start + k))


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # many workers x many threads would oversubscribe the cores


def step_batches(stream, collate: Collator, start: int, end: int, workers: int = 0,
                 pin_memory: bool = False):
    """Iterate the batches of steps start..end-1 in order. ``workers`` > 0 renders them in that
    many processes ahead of the training step (the GPU is otherwise starved by the synthetic
    renderer); the batches are identical either way, since each is a function of its step."""
    if workers <= 0:
        return (collate(stream.batch(s)) for s in range(start, end))
    return iter(torch.utils.data.DataLoader(
        _StepBatches(stream, collate, start, end), batch_size=None, shuffle=False,
        num_workers=workers, prefetch_factor=4, worker_init_fn=_one_thread, pin_memory=pin_memory,
        # its own generator: the loader draws a worker seed, which must not shift the global
        # RNG that the training step uses (DN box jitter), or workers would change the run
        generator=torch.Generator().manual_seed(start)))
