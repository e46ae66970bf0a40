"""Training data from SA-Co / COCO style JSON files.

Two flavours are read:

* **SA-Co style** (what :func:`conceptseg.data.synthetic.write_coco` writes): every ``images``
  entry is one (image file, noun phrase) datapoint with a ``text_input``; its annotations are the
  exhaustive list of instances of that phrase (none: a negative). Entries that share a file are
  grouped, so one image is encoded once for all its phrases.
* **plain COCO**: no ``text_input``; each category name is a phrase. Categories present in an
  image are positives (all their instances); the other categories are negatives (COCO labels are
  exhaustive over its categories).

Segmentations may be RLE (compressed string or uncompressed counts) or polygons. Everything is
validated when the dataset is opened: a missing or unreadable image, an annotation pointing at an
unknown image, an empty or malformed segmentation, an RLE whose size or counts do not fit the
image, a degenerate polygon. By default the first problem raises :class:`InputError` naming the
entry; with ``skip_bad=True`` every datapoint touched by a problem is dropped and counted
(``dataset.skipped``, ``dataset.skip_messages``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_util

from ..data.foreign import refuse_training
from ..errors import InputError
from ..ops.masks import rle_counts

__all__ = ["CocoConceptDataset", "validate_segmentation"]


def validate_segmentation(seg, height: int, width: int) -> str | None:
    """None if ``seg`` can be decoded to a height x width mask with at least one pixel, else why."""
    if seg is None or (isinstance(seg, (list, dict)) and len(seg) == 0):
        return "empty segmentation"
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            return f"invalid RLE: bad size {size!r}"
        h, w = size
        if (h, w) != (height, width):
            return f"invalid RLE: size {h}x{w} does not match the image ({height}x{width})"
        if isinstance(counts, (bytes, str)):
            try:
                runs = rle_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
            except (InputError, UnicodeDecodeError) as e:
                return f"invalid RLE: {e}"
        elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                              for v in counts):
            runs = counts
        else:
            return "invalid RLE: counts must be a string or a list of integers"
        if len(runs) == 0:
            return "invalid RLE: no runs"
        if any(v < 0 for v in runs):
            return "invalid RLE: negative run length"
        total = sum(runs)
        if total != h * w:
            return f"invalid RLE: runs cover {total} pixels, expected {h * w} ({h}x{w})"
        if sum(runs[1::2]) == 0:
            return "empty mask (RLE has no foreground pixel)"
        return None
    if isinstance(seg, list):
        for i, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in poly):
                return f"invalid polygon {i}: expected a list of numbers"
            if len(poly) < 6 or len(poly) % 2:
                return f"invalid polygon {i}: needs an even number (>= 6) of coordinates, got {len(poly)}"
            xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
            area = 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
            if area <= 0:
                return f"invalid polygon {i}: zero area"
        return None
    return f"invalid segmentation of type {type(seg).__name__}"


def _decode(seg, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):
        rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
    elif isinstance(seg.get("counts"), list):
        rle = mask_util.frPyObjects(seg, h, w)
    else:
        c = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": c.encode("ascii") if isinstance(c, str) else c}
    return mask_util.decode(rle).astype(bool)


@dataclass
class _Datapoint:
    phrase: str
    anns: list = field(default_factory=list)  # annotation dicts


@dataclass
class _Image:
    file: Path
    height: int
    width: int
    key: str  # the entry named in messages
    datapoints: list = field(default_factory=list)


class CocoConceptDataset:
    """Images with their (phrase, instances) datapoints, read from a COCO / SA-Co JSON.

    ``item(i, rng)`` returns the same structure as the synthetic dataset: ``{"image": float
    (3, S, S) in [0, 1], "queries": [{"text", "boxes" (N, 4) cxcywh, "masks" (N, h, w) float,
    "presence"}]}`` with masks already area-resized to ``mask_hw``.
    """

    def __init__(self, json_path, images_dir=None, image_size: int = 224,
                 mask_hw: tuple[int, int] | None = None, skip_bad: bool = False,
                 phrases_per_image: int | None = 4, positive_fraction: float = 0.5):
        self.path = Path(json_path)
        self.images_dir = Path(images_dir) if images_dir else self.path.parent
        self.image_size = int(image_size)
        self.mask_hw = tuple(mask_hw) if mask_hw else (image_size, image_size)
        self.skip_bad = skip_bad
        self.phrases_per_image, self.positive_fraction = phrases_per_image, positive_fraction
        self.skipped = 0
        self.skip_messages: list[str] = []
        self.images: list[_Image] = []
        self._load()

    # -- reading and validation -------------------------------------------------------------
    def _bad(self, msg: str) -> None:
        if not self.skip_bad:
            raise InputError(f"{self.path}: {msg}")
        self.skipped += 1
        self.skip_messages.append(msg)

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise InputError(f"annotation file not found: {self.path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{self.path}: not a readable JSON file ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise InputError(f"{self.path}: expected a COCO JSON object with an 'images' list")
        refuse_training(doc, self.path)  # the second renderer's scenes are never trained on
        entries, anns = doc["images"], doc.get("annotations")
        if not entries:
            raise InputError(f"{self.path}: the 'images' list is empty")
        if not isinstance(anns, list) or not anns:
            raise InputError(f"{self.path}: the 'annotations' list is missing or empty; nothing to "
                             "train on")
        saco = any("text_input" in e for e in entries if isinstance(e, dict))
        cats = {c["id"]: c.get("name") for c in doc.get("categories", []) if isinstance(c, dict)
                and "id" in c}
        if not saco and not cats:
            raise InputError(f"{self.path}: no 'text_input' on the image entries and no "
                             "'categories': there are no phrases to train on")
        by_id: dict = {}
        bad_ids: set = set()
        for n, e in enumerate(entries):
            if not isinstance(e, dict) or "id" not in e or "file_name" not in e:
                self._bad(f"images[{n}]: needs 'id' and 'file_name'")
                continue
            if saco and not str(e.get("text_input", "")).strip():
                self._bad(f"image id {e['id']} ({e['file_name']}): missing or empty 'text_input'")
                bad_ids.add(e["id"])
                continue
            by_id[e["id"]] = e
        # annotations grouped by image entry, validated against the entry's image size
        per_entry: dict = {}
        for n, a in enumerate(anns):
            if not isinstance(a, dict) or "image_id" not in a:
                self._bad(f"annotations[{n}]: not an annotation object with an 'image_id'")
                continue
            per_entry.setdefault(a["image_id"], []).append(a)
        sizes: dict[str, tuple[int, int] | None] = {}
        for img_id in list(per_entry):
            if img_id not in by_id and img_id not in bad_ids:
                for a in per_entry.pop(img_id):
                    self._bad(f"annotation id {a.get('id', '?')}: refers to unknown image id {img_id}")
        files: dict[str, _Image] = {}
        for img_id, e in by_id.items():
            fname = str(e["file_name"])
            where = f"image id {img_id} ({fname})"
            if fname not in sizes:
                sizes[fname] = self._image_size(fname)
            size = sizes[fname]
            if size is None:
                self._bad(f"{where}: image file not found or unreadable under {self.images_dir}")
                continue
            W, H = size
            ok, my_anns = True, per_entry.get(img_id, [])
            for a in my_anns:
                why = validate_segmentation(a.get("segmentation"), H, W)
                if why is None and not saco and a.get("category_id") not in cats:
                    why = f"unknown category id {a.get('category_id')}"
                if why is not None:
                    self._bad(f"annotation id {a.get('id', '?')} ({where}): {why}")
                    ok = False
                    break
            if not ok:
                continue
            im = files.get(fname)
            if im is None:
                im = files[fname] = _Image(self.images_dir / fname, H, W, where)
            if saco:
                im.datapoints.append(_Datapoint(str(e["text_input"]).strip(), my_anns))
            else:
                groups: dict = {}
                for a in my_anns:
                    groups.setdefault(a["category_id"], []).append(a)
                for cid, name in cats.items():
                    im.datapoints.append(_Datapoint(str(name), groups.get(cid, [])))
        self.images = [im for im in files.values() if im.datapoints]
        if not self.images:
            raise InputError(f"{self.path}: no usable image entries"
                             + (f" ({self.skipped} skipped as bad)" if self.skipped else ""))

    def _image_size(self, fname: str) -> tuple[int, int] | None:
        p = self.images_dir / fname
        try:
            with Image.open(p) as im:
                return im.size
        except (OSError, ValueError):
            return None

    # -- items ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def _select(self, dps: list[_Datapoint], rng: np.random.Generator) -> list[_Datapoint]:
        P = self.phrases_per_image
        if P is None:
            return list(dps)
        pos = [d for d in dps if d.anns]
        neg = [d for d in dps if not d.anns]
        n_pos = min(len(pos), int(round(P * self.positive_fraction)))
        n_neg = min(len(neg), P - n_pos)
        n_pos = min(len(pos), P - n_neg)
        out = [pos[i] for i in rng.permutation(len(pos))[:n_pos]]
        out += [neg[i] for i in rng.permutation(len(neg))[:n_neg]]
        while len(out) < P:
            out.append(dps[int(rng.integers(len(dps)))])
        return [out[i] for i in rng.permutation(len(out))]

    def item(self, index: int, rng: np.random.Generator) -> dict:
        im = self.images[index]
        try:
            with Image.open(im.file) as f:
                rgb = np.array(f.convert("RGB"))
        except OSError as e:
            raise InputError(f"{self.path}: {im.key}: cannot read image ({e})") from None
        S = self.image_size
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
        t = F.interpolate(t, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
        image = t[0].float() / 255.0
        H, W = rgb.shape[:2]
        queries = []
        decoded: dict[int, np.ndarray] = {}
        for dp in self._select(im.datapoints, rng):
            masks, boxes = [], []
            for a in dp.anns:
                key = id(a)
                if key not in decoded:
                    decoded[key] = _decode(a["segmentation"], H, W)
                m = decoded[key]
                masks.append(m)
                bb = a.get("bbox")
                if not (isinstance(bb, list) and len(bb) == 4 and bb[2] > 0 and bb[3] > 0):
                    ys, xs = np.nonzero(m)
                    bb = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                          float(ys.max() + 1 - ys.min())]
                x, y, w, h = (float(v) for v in bb)
                boxes.append([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H])
            if masks:
                mt = torch.from_numpy(np.stack(masks))
                mt = F.interpolate(mt[:, None].float(), size=self.mask_hw, mode="area")[:, 0]
            else:
                mt = torch.zeros((0, *self.mask_hw))
            queries.append({"text": dp.phrase,
                            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).clamp(0, 1),
                            "masks": mt, "presence": torch.tensor(float(bool(dp.anns)))})
        return {"image": image, "image_id": index, "queries": queries}
