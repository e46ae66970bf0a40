"""Image results: :class:`Prediction` (every instance of one prompt on one image; also named
:data:`ImageResult`) and :class:`Refinement` (interactive masks). Both serialise through the one
function per format in :mod:`conceptseg.ops.encode` (COCO RLE, polygons, boxes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from ..errors import InputError
from ..ops.encode import POLYGON_TOLERANCE, boxes_to_xywh, masks_to_polygons, rle_encode
from .overlay import draw_overlay

MASK_FORMATS = ("rle", "polygons", "none")  # how to_json writes each instance's mask


def plain_cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    """A CPU copy that is an ordinary tensor, not an inference-mode one (which callers could
    not modify in place or use in autograd)."""
    if t is None:
        return None
    with torch.inference_mode(False):
        return t.to("cpu", copy=True)


@dataclass(repr=False)
class Prediction:
    """Every instance found for one prompt on one image, sorted by decreasing score.

    masks N x H x W bool at the original image size; boxes N x 4 pixel xyxy, clipped to the
    image; scores N = sigmoid(query logit) * presence; presence = sigmoid(presence logit).
    """

    text: str | None  # the prompt; None for exemplar boxes without text
    masks: torch.Tensor  # N x H x W bool
    boxes: torch.Tensor  # N x 4 float pixel xyxy, within [0, W] x [0, H]
    scores: torch.Tensor  # N float, decreasing
    presence: float  # probability that the concept is in the image at all
    image_size: tuple[int, int]  # (height, width)
    mask_probs: torch.Tensor | None = None  # N x H x W mask probabilities (return_probs=True)
    image_id: str | None = field(default=None)  # fingerprint of the image it was made on
    num_found: int | None = None  # instances above the threshold before max_instances cut them

    def __len__(self) -> int:
        return int(self.scores.numel())

    def __repr__(self) -> str:
        scores = ", ".join(f"{s:.2f}" for s in self.scores[:5].tolist())
        more = ", ..." if len(self) > 5 else ""
        return (f"Prediction(text={self.text!r}, {len(self)} instance(s), scores [{scores}{more}], "
                f"presence {self.presence:.3f}, image {self.image_size[1]}x{self.image_size[0]})")

    def to_coco(self, image_id: int | str, category_id: int = 1, masks: str = "rle",
                tolerance: float = POLYGON_TOLERANCE) -> list[dict]:
        """COCO results entries: ``segmentation`` as RLE (pycocotools) or polygons (simplified
        within ``tolerance`` px; ``masks="none"`` leaves it out), ``bbox`` as pixel xywh."""
        segs = _segmentations(self.masks, masks, tolerance) if len(self) else []
        out = []
        for seg, box, score in zip(segs, boxes_to_xywh(self.boxes), self.scores.tolist()):
            entry = {"image_id": image_id, "category_id": category_id}
            if seg is not None:
                entry["segmentation"] = seg
            out.append({**entry, "bbox": box, "score": float(score)})
        return out

    def to_json(self, image_id: int | str | None = None, masks: str = "rle",
                tolerance: float = POLYGON_TOLERANCE) -> dict:
        """The document the CLI writes (and the server returns) for this prompt."""
        return {"text": self.text, "presence": float(self.presence),
                "height": self.image_size[0], "width": self.image_size[1],
                "instances": self.to_coco(image_id if image_id is not None else 0, masks=masks,
                                          tolerance=tolerance)}

    def overlay(self, image, alpha: float = 0.5, draw_boxes: bool = True,
                label: bool = True) -> Image.Image:
        """Draw the masks (coloured, translucent), boxes and scores over the image it was made
        on (an image of another size is refused)."""
        return draw_overlay(image, [self], alpha=alpha, draw_boxes=draw_boxes, label=label)


ImageResult = Prediction  # the name the server and the docs use for one prompt's result


def _segmentations(masks: torch.Tensor, fmt: str, tolerance: float) -> list:
    if fmt == "rle":
        return rle_encode(masks)
    if fmt == "polygons":
        return masks_to_polygons(masks, tolerance)
    if fmt == "none":
        return [None] * masks.shape[0]
    raise InputError(f"mask format must be one of {', '.join(MASK_FORMATS)}, got {fmt!r}")


@dataclass(repr=False)
class Refinement:
    """Result of :meth:`ImagePredictor.refine`, best first (decreasing predicted IoU)."""

    masks: torch.Tensor  # K x H x W bool at the image size
    scores: torch.Tensor  # K predicted IoU
    logits: torch.Tensor  # K x r x r low-res mask logits clamped to +-32 (feed back as mask_input)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def __repr__(self) -> str:
        h, w = self.masks.shape[-2:]
        scores = ", ".join(f"{s:.2f}" for s in self.scores.tolist())
        return f"Refinement({len(self)} mask(s), predicted IoU [{scores}], image {w}x{h})"

    def to_json(self, masks: str = "rle", tolerance: float = POLYGON_TOLERANCE) -> dict:
        """``{"height", "width", "masks": [{"segmentation", "score"}, ...]}``."""
        h, w = self.masks.shape[-2:]
        segs = _segmentations(self.masks, masks, tolerance) if len(self) else []
        return {"height": int(h), "width": int(w),
                "masks": [{"segmentation": s, "score": float(v)}
                          for s, v in zip(segs, self.scores.tolist())]}
