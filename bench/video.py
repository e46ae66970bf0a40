"""Video benchmark: a long synthetic clip through VideoSession, time per frame and memory.

A 1,000-frame clip (default 128 x 96) of moving coloured squares on a noisy background is
written as a frame folder, then a text prompt on frame 0 is propagated forward with the
official fixture's video model (``shared/reference/official_small``, or a random model of the
fixture sizes when the fixture is absent). Reports the mean time per frame over frames 0-99 and
the last 100, RSS (current and peak so far) at frames 100 and 1000, the tracker memory held
(frames in all banks) and the number of tracked objects.

What must hold: RSS stays flat (within 50 MB between frame 100 and the end) and time per frame
does not grow. With random weights the tracker loses every object and the detector re-finds it,
so objects pile up (as they would in the official code); ``--max-objects`` (default 8) caps them
so that the measurement is about per-frame cost, not about an ever-growing object count.

    python bench/video.py                        # 1,000 frames, ~1-2 min on one core
    python bench/video.py --frames 200 --threads 2

Several concepts (issue 13): ``--concepts "red object,blue object,green object"`` instead
times one session tracking the first phrase against one tracking all of them on the same clip
(default: the shipped clip and model), the median time per frame of each (best of
``--repeats`` runs, alternated), and prints their ratio (target: three concepts <= 1.5x one).
The trunk runs once per frame for all concepts; the detector's prompt part, the association
and the tracker (per object) scale with the concepts and the objects they find.

    python bench/video.py --concepts "red object,blue object,green object"
    python bench/video.py --concepts "red object,blue object,green object" --baseline object
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptseg.build import build_video_model, load_video_model  # noqa: E402
from conceptseg.inference.video import VideoSession  # noqa: E402
from conceptseg.inference.video import AssociationConfig  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_small"
CLIP = Path(__file__).resolve().parents[1] / "conceptseg" / "assets" / "examples" / "clip.mp4"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trim() -> None:
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def make_clip(folder: Path, frames: int, width: int, height: int, seed: int = 0) -> None:
    """Squares bouncing around (one red, one blue, a green one that comes and goes)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 120, (height, width, 3)).astype(np.uint8)
    objs = [((220, 30, 30), 18, np.array([10.0, 10.0]), np.array([1.3, 0.9])),
            ((40, 60, 220), 14, np.array([60.0, 40.0]), np.array([-0.8, 1.1])),
            ((40, 200, 60), 10, np.array([90.0, 20.0]), np.array([0.6, -1.4]))]
    for t in range(frames):
        f = bg.copy()
        for k, (colour, side, pos, vel) in enumerate(objs):
            if k == 2 and (t // 150) % 2 == 1:
                continue  # leaves and comes back
            pos += vel
            for a, lim in ((0, width - side), (1, height - side)):
                if pos[a] < 0 or pos[a] > lim:
                    vel[a] = -vel[a]
                    pos[a] = min(max(pos[a], 0), lim)
            x, y = int(pos[0]), int(pos[1])
            f[y:y + side, x:x + side] = colour
        Image.fromarray(f).save(folder / f"{t:05d}.png")


def time_concepts(model, video, phrases: list[str], frames: int | None) -> dict:
    """Per propagated frame of a session tracking ``phrases`` (median ms): the whole step
    (``engine.step``), its shared part (trunk + both necks, once per frame) and its detector
    part (one per concept); and the objects tracked at the end."""
    with VideoSession(model, video, file_preprocessing="torchcodec") as s:
        for k, p in enumerate(phrases):
            s.add_text(p, frame=0, replace=(k == 0))
        s.engine.features.clear()  # frame 0 is timed like the others
        s.engine.clear_caches()
        spent = {"step": [], "shared": [], "detect": []}
        eng = s.engine

        def timed(name, fn):
            def run(*a, **k):
                t1 = time.perf_counter()
                out = fn(*a, **k)
                spent[name][-1] += time.perf_counter() - t1
                return out
            return run

        step, frame, detect = eng.step, eng.features.frame, eng.detect
        eng.features.frame = timed("shared", frame)
        eng.detect = timed("detect", detect)

        def timed_step(state, t, reverse):
            for v in spent.values():
                v.append(0.0)
            return timed("step", step)(state, t, reverse)

        eng.step = timed_step
        for _ in s.propagate("forward", max_frames=frames):
            pass
        out = {k: 1000 * float(np.median(v)) for k, v in spent.items()}
        out["objects"] = len(s.obj_ids)
        return out


def concepts_main(args) -> None:
    phrases = [p.strip() for p in args.concepts.split(",") if p.strip()]
    model = load_video_model(args.checkpoint)  # default: the shipped model
    video = args.video or CLIP
    print(f"video {video}; model {args.checkpoint or 'shipped'}; torch threads "
          f"{torch.get_num_threads()}; phrases {phrases}; one concept: "
          f"{args.baseline or phrases[0]!r}")
    best: dict[int, dict] = {}
    one = [args.baseline] if args.baseline else phrases[:1]
    for _ in range(args.repeats):
        for k in (1, len(phrases)):
            r = time_concepts(model, video, one if k == 1 else phrases, args.concept_frames)
            if k not in best or r["step"] < best[k]["step"]:
                best[k] = r
    for k, r in best.items():
        rest = r["step"] - r["shared"] - r["detect"]
        print(f"{k} concept(s): {r['step']:.1f} ms/frame = trunk+necks {r['shared']:.1f} + "
              f"detector prompts {r['detect']:.1f} + tracker/association {rest:.1f} "
              f"({r['objects']} objects tracked at the end)")
    one, many = best[1]["step"], best[len(phrases)]["step"]
    print(f"ratio {len(phrases)} concepts / 1 concept: {many / one:.2f}x (median per frame, "
          f"best of {args.repeats})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", default="128x96", help="WxH of the clip")
    ap.add_argument("--text", default="red square")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--max-objects", type=int, default=8)
    ap.add_argument("--checkpoint", default=None, help="video checkpoint (default: fixture; "
                                                       "with --concepts: the shipped model)")
    ap.add_argument("--concepts", default=None,
                    help="comma-separated phrases: time all of them against the first alone")
    ap.add_argument("--video", default=None, help="with --concepts (default: the shipped clip)")
    ap.add_argument("--concept-frames", type=int, default=None,
                    help="with --concepts: frames per run (default: the whole clip)")
    ap.add_argument("--repeats", type=int, default=3, help="with --concepts: runs of each")
    ap.add_argument("--baseline", default=None,
                    help="with --concepts: the one-concept run's phrase (default: the first), "
                         "e.g. one phrase covering the same objects as the several")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.concepts:
        concepts_main(args)
        return
    w, h = (int(v) for v in args.size.lower().split("x"))

    ckpt = args.checkpoint or (FIXTURE / "video_model_state_dict.pt")
    if Path(ckpt).exists():
        model = load_video_model(ckpt)
        what = Path(ckpt).name
    else:
        model = build_video_model("fixture", seed=0)
        what = "random fixture-size model"
    cfg = AssociationConfig(max_num_objects=args.max_objects)
    marks = sorted({min(100, args.frames), args.frames})
    with tempfile.TemporaryDirectory(prefix="conceptseg_bench_") as tmp:
        t0 = time.perf_counter()
        make_clip(Path(tmp), args.frames, w, h)
        print(f"clip: {args.frames} frames {w}x{h} written in {time.perf_counter() - t0:.1f} s; "
              f"model: {what}; torch threads {torch.get_num_threads()}")
        trim()
        rss0 = rss_mb()
        with VideoSession(model, tmp, association=cfg) as s:
            s.add_text(args.text, frame=0)
            step_times = []
            step = s.engine.step

            def timed_step(state, t, reverse):  # time the per-frame work (yields are bursty)
                t1 = time.perf_counter()
                out = step(state, t, reverse)
                step_times.append(time.perf_counter() - t1)
                return out

            s.engine.step = timed_step
            report = {}
            peak = rss_mb()
            t0 = time.perf_counter()
            for i, (t, _) in enumerate(s.propagate("forward")):
                peak = max(peak, rss_mb())
                if i + 1 in marks:
                    trim()
                    report[i + 1] = (rss_mb(), peak, s.memory_frames(), len(s.obj_ids))
            total = time.perf_counter() - t0
    n = len(step_times)
    dts = 1000 * np.array(step_times)
    k = min(100, n // 2)
    print(f"total {total:.1f} s for {n} frames: {1000 * total / n:.1f} ms/frame overall")
    print(f"ms/frame (detector + tracker + association): frames 0-{k - 1} {dts[:k].mean():.1f}, "
          f"frames {n - k}-{n - 1} {dts[-k:].mean():.1f} (median {np.median(dts[:k]):.1f} / "
          f"{np.median(dts[-k:]):.1f})")
    print(f"RSS before the session {rss0:.0f} MB")
    for f, (cur, pk, mem, objs) in report.items():
        print(f"frame {f:5d}: RSS {cur:.0f} MB, peak {pk:.0f} MB, tracker memory {mem} frames, "
              f"{objs} objects tracked")
    if len(report) == 2:
        (a, b) = (report[marks[0]], report[marks[1]])
        print(f"RSS growth frame {marks[0]} -> {marks[1]}: {b[0] - a[0]:+.1f} MB "
              f"(peak {b[1] - a[1]:+.1f} MB); process peak {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
