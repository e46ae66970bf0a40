"""``conceptseg segment``: every instance of one or more concepts in an image."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write
from ..errors import InputError
from ..inference.concept import Concept
from ..inference.image import PRECISIONS, ImagePredictor
from ..inference.image_io import load_image
from ..inference.overlay import draw_overlay
from ..inference.prompts import validate_text
from ..inference.results import MASK_FORMATS
from ..runtime import check_output_path, resolve_device
from .common import check_exemplars, check_image_output, load_model, parse_exemplar


def register(sub) -> None:
    s = sub.add_parser("segment", help="find every instance of a concept in an image")
    s.add_argument("image")
    s.add_argument("--text", action="append", default=[],
                   help="noun phrase; repeat for several concepts (batched)")
    s.add_argument("--exemplar", action="append", default=[], metavar="x0,y0,x1,y1[:neg]",
                   help="exemplar box in pixels (clipped to the image); ':neg' marks a negative "
                        "example; applies to the --text phrases")
    s.add_argument("--concept", action="append", default=[], metavar="FILE",
                   help="a concept file (`conceptseg concept make`); repeat for several, beside "
                        "--text (one batch)")
    s.add_argument("--checkpoint", help="sam3.pt, HF safetensors (file or dir) or ours; "
                                        "default: the small model shipped in the package")
    s.add_argument("--config", help="preset name or config JSON for checkpoints of custom size")
    s.add_argument("--threshold", type=float, default=0.5)
    s.add_argument("--out", help="overlay image to write (.png .jpg .webp .gif .bmp .tif)")
    s.add_argument("--json", help="JSON with masks, boxes (pixel xywh) and scores")
    s.add_argument("--masks", choices=MASK_FORMATS[:2], default="rle",
                   help="mask format in --json: COCO RLE (exact) or polygons (outer outlines, "
                        "simplified within 1 px)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--precision", choices=PRECISIONS, default="fp32")
    s.set_defaults(func=cmd_segment)


def cmd_segment(args) -> int:
    # Validate everything cheap before loading a (possibly multi-GB) model.
    exemplars = [parse_exemplar(s) for s in args.exemplar]
    if not args.text and not exemplars and not args.concept:
        raise InputError("give --text, --exemplar, --concept, or several")
    if exemplars and args.concept and not args.text:
        raise InputError("--exemplar applies to --text phrases; to add boxes to a concept, "
                         "`conceptseg concept make` them and `conceptseg concept merge`")
    concepts = [Concept.load(p) for p in args.concept]
    for t in args.text:
        validate_text(t)
    if not 0.0 <= args.threshold <= 1.0:
        raise InputError(f"--threshold must be within [0, 1], got {args.threshold:g}")
    out_format = check_image_output(args.out) if args.out else None
    if args.json:
        check_output_path(args.json, "--json")
    resolve_device(args.device)
    rgb = load_image(args.image)
    check_exemplars(exemplars, rgb)
    model = load_model(args)
    pred = ImagePredictor(model, precision=args.precision)
    pred.set_image(rgb)
    results = pred.predict(text=list(args.text) if args.text else None,
                           exemplars=exemplars, threshold=args.threshold, concept=concepts)
    results = results if isinstance(results, list) else [results]
    labels = [r.text or "exemplars" for r in results[:len(results) - len(concepts)]] + \
        [c.label for c in concepts]
    for label, r in zip(labels, results):
        print(f"{label!r}: {len(r)} instance(s), presence {r.presence:.3f}"
              + ("".join(f"\n  score {s:.3f} box {[round(v, 1) for v in b]}"
                         for s, b in zip(r.scores.tolist(), r.boxes.tolist()))))
    if args.out:
        overlay = draw_overlay(rgb, results)
        atomic_write(Path(args.out), lambda t: overlay.save(t, format=out_format))
        print(f"overlay written to {args.out}")
    if args.json:
        doc = {"image": str(args.image),
               "results": [r.to_json(image_id=0, masks=args.masks) for r in results]}
        for doc_r, path, c in zip(doc["results"][len(results) - len(concepts):], args.concept,
                                  concepts):
            doc_r.update(concept=str(path), name=c.label)
        atomic_write(Path(args.json), lambda t: Path(t).write_text(json.dumps(doc)))
        print(f"json written to {args.json}")
    return 0
