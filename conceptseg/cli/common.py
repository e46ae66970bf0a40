"""What several sub-commands share: the prompt / box parser, model loading with a clock, output
format names, merged overlays."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InputError


def parse_exemplar(spec: str) -> tuple[tuple[float, float, float, float], bool]:
    """'x0,y0,x1,y1' or 'x0,y0,x1,y1:neg' (or ':pos') -> ((x0, y0, x1, y1), positive)."""
    coords, _, label = spec.partition(":")
    label = label.strip().lower() or "pos"
    if label not in ("pos", "neg", "positive", "negative", "+", "-"):
        raise InputError(f"exemplar {spec!r}: label must be 'pos' or 'neg'")
    parts = coords.split(",")
    if len(parts) != 4:
        raise InputError(f"exemplar {spec!r}: expected four numbers x0,y0,x1,y1")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"exemplar {spec!r}: coordinates must be numbers") from None
    return box, label in ("pos", "positive", "+")  # type: ignore[return-value]


def load_model(args):
    from tqdm import tqdm

    from ..build import default_weights_path, load
    from ..config import Sam3Config, get_config

    config = None
    if getattr(args, "config", None):
        if Path(args.config).is_file():
            try:
                config = Sam3Config.from_dict(json.loads(Path(args.config).read_text()))
            except (ValueError, TypeError) as e:
                raise InputError(f"config {args.config}: {e}") from None
        else:
            config = get_config(args.config)
    path = args.checkpoint or default_weights_path()
    # A running clock while a large checkpoint loads; only on a terminal, so that logs and
    # error output stay one line.
    with tqdm(total=1, desc=f"loading {Path(path).name}", file=sys.stderr, leave=False,
              bar_format="{desc}: {elapsed}", disable=not sys.stderr.isatty()) as bar:
        model = load(args.checkpoint, config=config, device=args.device)
        bar.update(1)
    return model


def image_format(path: str) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(ext, "PNG")


def merge_overlays(results, image):
    """One picture for several prompts: each prompt's instances drawn in turn."""
    import numpy as np

    from ..inference.image_io import load_image

    canvas = load_image(image)
    for r in results:
        canvas = np.asarray(r.overlay(canvas))
    from PIL import Image

    return Image.fromarray(canvas)


