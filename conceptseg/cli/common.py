"""What several sub-commands share: the exemplar parser, model loading with a clock, output
image formats."""

from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import default_weights_path, load
from ..errors import InputError
from ..inference.prompts import clip_exemplars, parse_label
from ..runtime import check_output_path, progress, resolve_device


def parse_exemplar(spec: str) -> tuple[tuple[float, float, float, float], bool]:
    """'x0,y0,x1,y1' or 'x0,y0,x1,y1:neg' (or ':pos', ':+', ':-') -> ((x0, y0, x1, y1), positive)."""
    coords, _, label = spec.partition(":")
    try:
        positive = parse_label(label or "pos")
    except InputError:
        raise InputError(f"exemplar {spec!r}: label must be 'pos' or 'neg'") from None
    parts = coords.split(",")
    if len(parts) != 4:
        raise InputError(f"exemplar {spec!r}: expected four numbers x0,y0,x1,y1")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"exemplar {spec!r}: coordinates must be numbers") from None
    return box, positive  # type: ignore[return-value]


def check_exemplars(exemplars, rgb) -> None:
    """Before the model: every box on the image (HxWx3); a note for each one clipped to it."""
    H, W = rgb.shape[:2]
    for (given, _), (clipped, _) in zip(exemplars, clip_exemplars(exemplars, W, H)):
        if tuple(given) != tuple(clipped):
            print(f"note: exemplar {','.join(f'{v:g}' for v in given)} clipped to the {W}x{H} "
                  f"image: {','.join(f'{v:g}' for v in clipped)}")


NUMBER_LIST_OPTIONS = ("--exemplar", "--box", "--point")  # options whose value is x,y,...
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NEGATIVE_LIST = re.compile(rf"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:,{_NUMBER})+(?::\w*[+-]?)?")


def attach_number_lists(argv: list[str]) -> list[str]:
    """``--exemplar -5,10,50,60`` -> ``--exemplar=-5,10,50,60``: argparse takes a value that
    starts with '-' and is not a plain negative number for an unknown option. Only the options
    of NUMBER_LIST_OPTIONS are touched, and nothing after ``--``."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        if out and out[-1] in NUMBER_LIST_OPTIONS and _NEGATIVE_LIST.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def load_model(args, kind: str = "image"):
    """The model (``kind`` image or video) named by ``--checkpoint`` / ``--config`` (a preset
    or a config JSON) on ``--device`` (checked first); default: the shipped model."""
    device = resolve_device(getattr(args, "device", None))
    path = args.checkpoint or default_weights_path()
    # a running clock while a large checkpoint loads (only on a terminal)
    with progress(total=1, desc=f"loading {Path(path).name}", leave=False,
                  bar_format="{desc}: {elapsed}") as bar:
        model = load(args.checkpoint, kind, config=getattr(args, "config", None), device=device)
        bar.update(1)
    return model


OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF",
                  ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}  # overlay suffix -> PIL format


def image_format(path: str | Path) -> str:
    """The PIL format an output image's suffix names, or a one-line InputError."""
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise InputError(f"{path}: unknown image suffix {ext or '(none)'!r}; use one of "
                         + " ".join(OUTPUT_FORMATS))
    return OUTPUT_FORMATS[ext]


def check_image_output(path: str | Path, what: str = "--out") -> str:
    """Before any work: the path is writable and names an image format. Returns the format."""
    check_output_path(path, what)
    return image_format(path)

