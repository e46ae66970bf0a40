"""``conceptseg`` command line: one entry point, sub-commands.

Errors meant for users (bad images, prompts, boxes, checkpoints) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .atomic import atomic_write
from .errors import ConceptSegError, InputError


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


def _load_model(args):
    from tqdm import tqdm

    from .build import default_weights_path, load
    from .config import Sam3Config, get_config

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


def cmd_segment(args) -> int:
    from .inference.image import ImagePredictor, validate_exemplars, validate_text
    from .inference.image_io import load_image

    # Validate everything cheap before loading a (possibly multi-GB) model.
    exemplars = [parse_exemplar(s) for s in args.exemplar]
    if not args.text and not exemplars:
        raise InputError("give --text, --exemplar, or both")
    for t in args.text:
        validate_text(t)
    rgb = load_image(args.image)
    validate_exemplars(exemplars, rgb.shape[1], rgb.shape[0])
    model = _load_model(args)
    pred = ImagePredictor(model, precision=args.precision)
    pred.set_image(rgb)
    texts = args.text or [None]
    results = pred.predict(text=list(texts) if args.text else None, exemplars=exemplars,
                           threshold=args.threshold)
    results = results if isinstance(results, list) else [results]
    for r in results:
        print(f"{r.text or 'exemplars'!r}: {len(r)} instance(s), presence {r.presence:.3f}"
              + ("".join(f"\n  score {s:.3f} box {[round(v, 1) for v in b]}"
                         for s, b in zip(r.scores.tolist(), r.boxes.tolist()))))
    if args.out:
        overlay = _merge_overlays(results, rgb)
        atomic_write(Path(args.out), lambda t: overlay.save(t, format=_fmt(args.out)))
        print(f"overlay written to {args.out}")
    if args.json:
        doc = {"image": str(args.image), "results": [r.to_json(image_id=0) for r in results]}
        atomic_write(Path(args.json), lambda t: Path(t).write_text(json.dumps(doc)))
        print(f"json written to {args.json}")
    return 0


def _fmt(path: str) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(ext, "PNG")


def _merge_overlays(results, image):
    """One picture for several prompts: each prompt's instances drawn in turn."""
    import numpy as np

    from .inference.image_io import load_image

    canvas = load_image(image)
    for r in results:
        canvas = np.asarray(r.overlay(canvas))
    from PIL import Image

    return Image.fromarray(canvas)


def cmd_convert(args) -> int:
    from .checkpoint import _read_raw, convert
    from .config import get_config

    config = get_config(args.config) if args.config else None
    raw, _ = _read_raw(args.src)
    if any(k.startswith(("tracker.", "tracker_model.")) for k in raw) and args.to != "hf":
        # A video checkpoint (detector + tracker): keep the tracker in the output.
        from .build import load_video_model, save_video_checkpoint

        del raw
        save_video_checkpoint(load_video_model(args.src, config=config), args.dst, layout=args.to)
        print(f"converted video checkpoint {args.src} -> {args.dst} ({args.to} layout)")
        return 0
    del raw
    detected = convert(args.src, args.dst, args.to, config=config)
    note = " (image model only: the tracker has no HF image layout)" if args.to == "hf" else ""
    print(f"converted {args.src} ({detected} layout) -> {args.dst} ({args.to} layout){note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conceptseg", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="find every instance of a concept in an image")
    s.add_argument("image")
    s.add_argument("--text", action="append", default=[],
                   help="noun phrase; repeat for several concepts (batched)")
    s.add_argument("--exemplar", action="append", default=[], metavar="x0,y0,x1,y1[:neg]",
                   help="exemplar box in pixels; ':neg' marks a negative example")
    s.add_argument("--checkpoint", help="sam3.pt, HF safetensors (file or dir) or ours; "
                                        "default: the small model shipped in the package")
    s.add_argument("--config", help="preset name or config JSON for checkpoints of custom size")
    s.add_argument("--threshold", type=float, default=0.5)
    s.add_argument("--out", help="overlay image to write (png/jpg)")
    s.add_argument("--json", help="JSON with RLE masks, boxes and scores")
    s.add_argument("--device", default="cpu")
    s.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    s.set_defaults(func=cmd_segment)

    c = sub.add_parser("convert", help="rewrite a checkpoint in another layout")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", choices=["ours", "official", "hf"], required=True)
    c.add_argument("--config", help="preset for checkpoints whose sizes match none")
    c.set_defaults(func=cmd_convert)

    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    """Sub-commands defined next to their features (train, eval, demo ...), when present."""
    import importlib

    out = []
    for mod in ("conceptseg.train.cli", "conceptseg.evaluate.cli", "conceptseg.demo",
                "conceptseg.track_cli"):
        try:
            out.append(importlib.import_module(mod).register)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConceptSegError as e:
        print(f"conceptseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
