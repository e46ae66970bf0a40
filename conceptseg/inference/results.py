"""Prediction results: masks, boxes, scores and presence, with COCO RLE export and overlays."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..ops.masks import rle_encode


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated colours (golden-ratio hue steps)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.75, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


@dataclass
class Prediction:
    """Every instance found for one prompt on one image, sorted by decreasing score.

    masks N x H x W bool at the original image size; boxes N x 4 pixel xyxy;
    scores N = sigmoid(query logit) * presence; presence = sigmoid(presence logit).
    """

    text: str | None
    masks: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    presence: float
    image_size: tuple[int, int]  # (height, width)
    mask_probs: torch.Tensor | None = field(default=None, repr=False)  # N x H x W, optional

    def __len__(self) -> int:
        return int(self.scores.numel())

    def to_coco(self, image_id: int | str, category_id: int = 1) -> list[dict]:
        """COCO results entries (RLE masks via pycocotools, bbox as pixel xywh)."""
        rles = rle_encode(self.masks) if len(self) else []
        out = []
        for rle, box, score in zip(rles, self.boxes.tolist(), self.scores.tolist()):
            x0, y0, x1, y1 = box
            out.append({"image_id": image_id, "category_id": category_id, "segmentation": rle,
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
        return out

    def to_json(self, image_id: int | str | None = None) -> dict:
        return {"text": self.text, "presence": float(self.presence),
                "height": self.image_size[0], "width": self.image_size[1],
                "instances": self.to_coco(image_id if image_id is not None else 0)}

    def overlay(self, image, alpha: float = 0.5, draw_boxes: bool = True,
                label: bool = True) -> Image.Image:
        """Draw the masks (coloured, translucent), boxes and scores over the image."""
        from .image_io import load_image

        rgb = load_image(image).astype(np.float32)
        colours = palette(len(self))
        for m, c in zip(self.masks.cpu().numpy(), colours):
            rgb[m] = rgb[m] * (1 - alpha) + np.array(c, np.float32) * alpha
        im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        width = max(1, round(max(im.size) / 400))
        for i, (box, score, c) in enumerate(zip(self.boxes.tolist(), self.scores.tolist(), colours)):
            if draw_boxes:
                draw.rectangle(box, outline=c, width=width)
            if label:
                text = f"{self.text or 'exemplar'} {score:.2f}"
                x, y = box[0], max(0, box[1] - 12)
                tb = draw.textbbox((x, y), text)
                draw.rectangle(tb, fill=(0, 0, 0))
                draw.text((x, y), text, fill=c)
        return im
