"""``conceptseg concept``: make a reusable concept from exemplar boxes on a reference image,
merge concepts from several images, show what a concept file holds.

    conceptseg concept make ref.jpg --exemplar 10,20,200,180 [--text bolt] --out bolt.concept
    conceptseg concept merge a.concept b.concept --out ab.concept
    conceptseg segment other.jpg --concept bolt.concept
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..inference.concept import Concept
from ..inference.image import ImagePredictor
from ..inference.image_io import load_image
from ..inference.prompts import validate_text
from ..runtime import check_output_path, resolve_device
from .common import check_exemplars, load_model, parse_exemplar


def register(sub) -> None:
    c = sub.add_parser("concept", help="make, merge or show a reusable concept (exemplar boxes "
                                       "from reference images)")
    actions = c.add_subparsers(dest="action", required=True)
    m = actions.add_parser("make", help="encode exemplar boxes on a reference image")
    m.add_argument("image", help="the reference image the boxes are drawn on")
    m.add_argument("--exemplar", action="append", default=[], metavar="x0,y0,x1,y1[:neg]",
                   help="exemplar box in pixels (clipped to the image); ':neg' marks a negative "
                        "example; repeat for several")
    m.add_argument("--text", help="a phrase kept with the boxes (default: boxes only)")
    m.add_argument("--name", help="label in outputs (default: the --out file's stem)")
    m.add_argument("--out", required=True, help="concept file to write (e.g. bolt.concept)")
    m.add_argument("--checkpoint", help="the model to encode with (default: the shipped model); "
                                        "the concept only works with this model")
    m.add_argument("--config", help="preset name or config JSON for checkpoints of custom size")
    m.add_argument("--device", default="cpu")
    m.set_defaults(func=cmd_make)
    g = actions.add_parser("merge", help="pool the exemplars of concepts from 1-3 reference images")
    g.add_argument("concepts", nargs="+", help="concept files made with one model")
    g.add_argument("--name", help="label in outputs (default: the --out file's stem)")
    g.add_argument("--out", required=True, help="concept file to write")
    g.set_defaults(func=cmd_merge)
    s = actions.add_parser("show", help="what a concept file holds")
    s.add_argument("concept")
    s.set_defaults(func=cmd_show)


def describe(concept: Concept) -> str:
    lines = [f"{concept.label!r}: text {concept.text!r}, {len(concept)} exemplar(s), "
             f"model {concept.model_id}"]
    for src in concept.sources:
        H, W = src.image_size
        boxes = ", ".join(f"{'+' if lab else '-'}{[round(v, 1) for v in box]}"
                          for box, lab in zip(src.boxes, src.labels))
        lines.append(f"  image {src.image_id} ({W}x{H}): {boxes or 'no boxes'}")
    return "\n".join(lines)


def cmd_make(args) -> int:
    exemplars = [parse_exemplar(s) for s in args.exemplar]
    if args.text is None and not exemplars:
        raise InputError("give --exemplar (one or more), --text, or both")
    if args.text is not None:
        validate_text(args.text)
    check_output_path(args.out, "--out")
    resolve_device(args.device)
    rgb = load_image(args.image)
    check_exemplars(exemplars, rgb)
    pred = ImagePredictor(load_model(args)).set_image(rgb)
    concept = pred.encode_concept(text=args.text, exemplars=exemplars,
                                  name=args.name or Path(args.out).stem)
    return _write(concept, args.out)


def cmd_merge(args) -> int:
    check_output_path(args.out, "--out")
    merged = Concept.merge([Concept.load(p) for p in args.concepts],
                           name=args.name or Path(args.out).stem)
    return _write(merged, args.out)


def _write(concept: Concept, path: str) -> int:
    concept.save(path)
    print(describe(concept))
    print(f"concept written to {path}")
    return 0


def cmd_show(args) -> int:
    print(describe(Concept.load(args.concept)))
    return 0
