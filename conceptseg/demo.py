"""``conceptseg demo``: segment the example images shipped in the package with the shipped
model, write overlays and JSON, and print where they are."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from .atomic import atomic_write
from .cli import _merge_overlays


def examples_dir() -> Path:
    return Path(str(resources.files("conceptseg") / "assets" / "examples"))


def run_demo(out_dir: str | Path = "demo_out", checkpoint: str | None = None,
             threshold: float = 0.5) -> list[Path]:
    from .build import load
    from .inference.image import ImagePredictor
    from .inference.image_io import load_image

    out = Path(out_dir)
    model = load(checkpoint)
    pred = ImagePredictor(model)
    prompts = json.loads((examples_dir() / "prompts.json").read_text())
    written, summary = [], {}
    for name, texts in prompts.items():
        t = time.perf_counter()
        rgb = load_image(examples_dir() / name)
        results = pred.set_image(rgb).predict(text=texts, threshold=threshold)
        dt = time.perf_counter() - t
        stem = Path(name).stem
        for r in results:
            # one overlay per prompt, so each concept can be checked by eye
            slug = r.text.replace(" ", "_")
            path = out / f"{stem}_{slug}.png"
            img = r.overlay(rgb)
            atomic_write(path, lambda tmp, img=img: img.save(tmp, format="PNG"))
            written.append(path)
        combined = out / f"{stem}_all.png"
        merged = _merge_overlays(results, rgb)
        atomic_write(combined, lambda tmp: merged.save(tmp, format="PNG"))
        written.append(combined)
        summary[name] = [r.to_json() for r in results]
        found = ", ".join(f"{r.text!r}: {len(r)}" for r in results)
        print(f"{name} ({dt:.2f} s for {len(texts)} prompts): {found}")
    js = out / "results.json"
    atomic_write(js, lambda tmp: Path(tmp).write_text(json.dumps(summary)))
    written.append(js)
    print(f"\nwrote {len(written)} files to {out.resolve()}/ (overlays *_all.png, results.json)")
    return written


def cmd_demo(args) -> int:
    run_demo(args.out, args.checkpoint, args.threshold)
    return 0


def register(sub) -> None:
    d = sub.add_parser("demo", help="segment the shipped examples with the shipped model")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--checkpoint", help="default: the small model shipped in the package")
    d.add_argument("--threshold", type=float, default=0.5)
    d.set_defaults(func=cmd_demo)
