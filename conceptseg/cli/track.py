"""``conceptseg track``: segment every instance of one or several concepts in a video and
track them.

    conceptseg track clip.mp4 --text "red car" --out overlay.mp4 --json masklets.json
    conceptseg track clip.mp4 --text "red car" --text bicycle --concept bolt.concept

Each ``--text`` and ``--concept`` (a file from ``conceptseg concept make``) is one concept,
tracked beside the others in one session (the vision encoder runs once per frame for all; each
object belongs to one concept, ids are unique across them). The prompts are applied on
``--frame`` (default 0); propagation runs forward from there and, if that is not the first
frame, backward too. ``--json`` gets, per frame, every object's id, score, pixel box (from its
final mask), COCO RLE mask and phrase (its concept) under ``"objects"``, and the ids of tracked
objects left without pixels on that frame under ``"empty"``; the overlay labels each object
with its id and phrase. Both outputs are written atomically. Errors (unreadable video or frame,
unwritable output, bad prompt, unavailable device, checkpoint without tracker weights...) are
one line on stderr, exit status 2, and are found before tracking starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_write
from ..build import default_weights_path, load_video_model
from ..errors import InputError
from ..inference.concept import Concept
from ..inference.prompts import validate_text
from ..inference.video import VideoSession
from ..runtime import check_output_path, progress, resolve_device
from ..video.io import open_video
from ..video.writer import draw_overlay, write_overlay_video


def register(sub) -> None:
    t = sub.add_parser("track", help="segment and track every instance of one or several "
                                     "concepts in a video")
    t.add_argument("video", help="video file (.mp4 .mov .avi .mkv .webm), folder of frames, "
                                 "or one image")
    t.add_argument("--text", action="append", default=[],
                   help="noun phrase to segment and track; repeat for several concepts")
    t.add_argument("--concept", action="append", default=[], metavar="FILE",
                   help="a concept file (`conceptseg concept make`); repeatable, beside --text")
    t.add_argument("--frame", type=int, default=0,
                   help="frame the prompts are applied on (default 0)")
    t.add_argument("--checkpoint", help="video checkpoint: official sam3.pt, facebook/sam3 or "
                                        "ours (with tracker weights); default: the shipped model")
    t.add_argument("--out", help="overlay video to write (.mp4)")
    t.add_argument("--json", help="JSON with per-frame RLE masks per object id")
    t.add_argument("--max-frames", type=int, default=None,
                   help="frames to process in each direction (default: all)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    t.add_argument("--file-preprocessing", choices=["cv2", "torchcodec"], default="cv2",
                   help="video files: 'cv2' = the official default loader, which skips the /255 "
                        "(upstream sam3#493, kept for parity); 'torchcodec' normalises properly "
                        "(use it for models trained on normalised frames, like the shipped one)")
    t.set_defaults(func=cmd_track)


def _load_video_model(args, device):
    path = args.checkpoint or default_weights_path()
    with progress(total=1, desc=f"loading {Path(path).name}", leave=False,
                  bar_format="{desc}: {elapsed}") as bar:
        model = load_video_model(args.checkpoint, device=device)
        bar.update(1)
    return model


def cmd_track(args) -> int:
    # everything cheap first, before loading a (possibly multi-GB) model and tracking
    if not args.text and not args.concept:
        raise InputError("give --text, --concept, or several")
    texts = [validate_text(t) for t in args.text]
    concepts = [Concept.load(p) for p in args.concept]
    labels = texts + [c.label for c in concepts]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"each concept once: {dup} given twice")
    device = resolve_device(args.device)
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.out and Path(args.out).suffix.lower() != ".mp4":
        raise InputError(f"--out {args.out}: the overlay is written as .mp4")
    for path, what in ((args.out, "--out"), (args.json, "--json")):
        if path:
            check_output_path(path, what)
    with open_video(args.video) as src:  # checks every frame of a folder too
        n = len(src)
        if not 0 <= args.frame < n:
            raise InputError(f"--frame {args.frame} is out of range: the video has {n} frames")
    model = _load_video_model(args, device)
    for c in concepts:  # a concept made with another model: one line, before tracking
        c.check_model(model)
    run_track(model, args.video, texts, concepts=concepts, frame=args.frame,
              max_frames=args.max_frames, out=args.out, json_path=args.json,
              precision=args.precision, file_preprocessing=args.file_preprocessing, device=device)
    return 0


def run_track(model, video, text: str | Sequence[str] = (), *, concepts: Sequence[Concept] = (),
              frame: int = 0, max_frames: int | None = None, out=None, json_path=None,
              precision: str = "fp32", file_preprocessing: str = "cv2", device=None) -> dict:
    """Track ``text`` (one phrase or several) and ``concepts`` in ``video`` with a loaded
    video model, all in one session; write the overlay mp4 and / or the masklet JSON
    (atomically). Returns the JSON document (ids, per-frame RLE masks and phrases; objects
    emptied by the non-overlap step are listed per frame under ``"empty"``)."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts and not concepts:
        raise InputError("give at least one text or concept")
    for path, what in ((out, "--out"), (json_path, "--json")):
        if path:
            check_output_path(path, what)
    with VideoSession(model, video, precision=precision, file_preprocessing=file_preprocessing,
                      device=device) as session:
        n = len(session.source)
        first = None
        for k, prompt in enumerate([*texts, *concepts]):
            add = session.add_text if isinstance(prompt, str) else session.add_concept
            first = add(prompt, frame=frame, replace=(k == 0))
        direction = "both" if frame > 0 else "forward"
        forward = n - frame if max_frames is None else min(max_frames, n - frame)
        backward = 0 if frame == 0 else (frame if max_frames is None else min(max_frames, frame))
        with progress(total=forward + backward, desc="tracking", unit="frame") as bar:
            for _ in session.propagate(direction, start=frame, max_frames=max_frames):
                bar.update(1)
        results = session.results()
        # what is written: the prompted frame as released by the propagation (the hotstart may
        # have removed objects the prompts found), counting objects with pixels only
        shown = results[frame] if frame in results else first
        ids = results.obj_ids
        for phrase in session.phrases:
            count = sum(1 for p, e in zip(shown.phrases, shown.empty.tolist())
                        if p == phrase and not e)
            mine = sorted({o for t in results for o, p in
                           zip(results[t].obj_ids.tolist(), results[t].phrases) if p == phrase}
                          & set(ids))
            print(f"{phrase!r}: {count} instance(s) on frame {frame}; {len(mine)} object(s) "
                  f"tracked over {len(results)} frame(s)" + (f", ids {mine}" if mine else ""))
        doc = {"video": str(video), "text": texts[0] if len(session.phrases) == 1 and texts
               else None, "phrases": session.phrases, "prompt_frame": frame,
               "num_frames": n, "fps": session.source.fps, **results.to_json()}
        if json_path:
            _write(json_path, lambda t: Path(t).write_text(json.dumps(doc)))
            print(f"json written to {json_path}")
        if out:
            def frames():
                for t in range(n):
                    img = session.source.frame(t)
                    if t in results:
                        r = results[t]
                        if len(r):
                            labels = [f"{o} {p}" if p else str(o)
                                      for o, p in zip(r.obj_ids.tolist(), r.phrases)]
                            img = draw_overlay(img, r.masks, r.obj_ids.tolist(), draw_ids=True,
                                               labels=labels)
                    yield img

            _write(out, None, lambda: write_overlay_video(out, frames(), session.source.fps))
            print(f"overlay written to {out}")
    return doc


def _write(path, write, writer=None) -> None:
    """Atomic write; OS errors become one-line input errors."""
    try:
        if writer is not None:
            writer()
        else:
            atomic_write(Path(path), write)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
