"""``conceptseg demo``: segment the example images shipped in the package with the shipped
model, write overlays and JSON, and print where they are."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from ..atomic import atomic_write
from .. import build
from ..errors import CheckpointError, MissingDependencyError, require
from ..inference.image import ImagePredictor
from ..inference.image_io import load_image
from ..inference.overlay import draw_overlay
from ..runtime import check_output_path
from .track import run_track


def examples_dir() -> Path:
    return Path(str(resources.files("conceptseg") / "assets" / "examples"))


def run_demo(out_dir: str | Path = "demo_out", checkpoint: str | None = None,
             threshold: float = 0.5) -> list[Path]:
    out = check_output_path(out_dir, "demo output folder", directory=True)
    model = build.load(checkpoint)
    pred = ImagePredictor(model)
    prompts = json.loads((examples_dir() / "prompts.json").read_text())
    written, summary = [], {}
    videos = {k: v for k, v in prompts.items() if Path(k).suffix.lower() in VIDEO_SUFFIXES}
    for name, texts in prompts.items():
        if name in videos:
            continue
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
        merged = draw_overlay(rgb, results)
        atomic_write(combined, lambda tmp: merged.save(tmp, format="PNG"))
        written.append(combined)
        summary[name] = [r.to_json() for r in results]
        found = ", ".join(f"{r.text!r}: {len(r)}" for r in results)
        print(f"{name} ({dt:.2f} s for {len(texts)} prompts): {found}")
    if videos:
        written += _run_video_demo(videos, out, checkpoint)
    js = out / "results.json"
    atomic_write(js, lambda tmp: Path(tmp).write_text(json.dumps(summary)))
    written.append(js)
    print(f"\nwrote {len(written)} files to {out.resolve()}/ (overlays *_all.png, results.json)")
    return written


VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")


def _run_video_demo(videos: dict[str, list[str]], out: Path, checkpoint: str | None) -> list[Path]:
    """Track each clip's prompts with the video model (detector + tracker); overlay mp4 + JSON
    per prompt. Skipped with a note when PyAV is missing or the checkpoint has no tracker."""
    try:
        require("av", "video")
    except MissingDependencyError as e:
        print(f"video demo skipped: {e}")
        return []
    try:
        model = build.load_video_model(checkpoint)
    except CheckpointError as e:
        print(f"video demo skipped: {e}")
        return []
    written = []
    for name, texts in videos.items():
        stem = Path(name).stem
        for text in texts:
            slug = text.replace(" ", "_")
            t = time.perf_counter()
            mp4, js = out / f"{stem}_{slug}.mp4", out / f"{stem}_{slug}.json"
            # the shipped model was trained on frames divided by 255: not the official cv2
            # loader's behaviour (see conceptseg.video.preprocess)
            run_track(model, examples_dir() / name, text, out=mp4, json_path=js,
                      file_preprocessing="torchcodec")
            print(f"  ({time.perf_counter() - t:.1f} s)")
            written += [mp4, js]
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
