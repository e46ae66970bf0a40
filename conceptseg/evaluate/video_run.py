"""Run a video model on a YTVIS / SA-Co-VEval-style dataset and stream its predictions (the
``conceptseg eval --video --model M --data D`` path).

* :func:`synthetic_video_test_set` writes (once) a held-out synthetic test split of the video
  data engine: new seeds far from the training ones, ``split="test"`` scenes (they contain the
  colour-shape pairs held out of training).
* :func:`resolve_videos` finds every GT video next to its annotations: a frame folder
  (``file_names`` relative to the annotation folder, its ``frames/`` or ``JPEGImages/``
  subfolder, or ``--images``) or a video file ``<video_name>.mp4`` (any ``VIDEO_EXTS``).
* :func:`predict_videos` runs one :class:`~conceptseg.inference.video.VideoSession` per
  (video, phrase) pair (text on frame 0, forward propagation) and converts its
  ``results().to_json()`` with :func:`~conceptseg.evaluate.video.track_json_to_ytvis` (one YTVIS
  entry per object id: per-frame RLE or None, score = the object's detection score).
  :class:`PairWriter` appends each finished pair to ``<out>.partial.jsonl``, so an interrupted
  run continues where it stopped; the flat YTVIS results list is written atomically at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from .writer import file_hash

__all__ = ["DEFAULT_NUM_VIDEOS", "DEFAULT_NUM_FRAMES", "synthetic_video_test_set", "resolve_videos",
           "run_pair", "PairWriter", "predict_videos", "model_label"]

DEFAULT_NUM_VIDEOS = 20
DEFAULT_NUM_FRAMES = 12
PairKey = tuple[int, int]


def synthetic_video_test_set(spec: str, out: Path, image_size: int,
                             num_frames: int = DEFAULT_NUM_FRAMES) -> Path:
    """'synthetic' or 'synthetic:N' (default N = 20 videos): the held-out synthetic video test
    split at ``image_size``, written once under ``out/`` and reused by later runs."""
    from ..data.synthetic_video import write_video_dataset
    from ..data.splits import TEST_SEED

    _, _, n = spec.partition(":")
    if n and not n.isdigit():
        raise InputError(f"--data {spec!r}: expected synthetic, synthetic:N or a YTVIS / VEval "
                         "annotations JSON")
    num = int(n) if n else DEFAULT_NUM_VIDEOS
    if num < 1 or num_frames < 1:
        raise InputError(f"--data {spec!r}: need at least one video of at least one frame")
    path = out / f"synthetic_video_test_{num}x{num_frames}_{image_size}px" / "annotations.json"
    if not path.exists():  # annotations.json is written (atomically) after every frame
        write_video_dataset(path.parent, num, seed=TEST_SEED, num_frames=num_frames,
                            image_size=image_size, split="test")
    return path


def _frame_names(folder: Path) -> list[str]:
    from ..video.io import IMAGE_EXTS

    return [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]


def resolve_videos(gt_path: Path, gt, images: str | None = None) -> dict[int, Path]:
    """Video id -> frame folder or video file, for every video of ``gt``.  A frame folder must
    hold exactly the frames its ``file_names`` list (subsampled annotations are not supported),
    a video file is accepted as is (its length is checked when it is opened)."""
    from ..video.io import VIDEO_EXTS

    data = json.loads(gt_path.read_text())
    files = {v["id"]: v.get("file_names") for v in data["videos"]}
    base = gt_path.parent
    roots = [Path(images)] if images else [base, base / "frames", base / "JPEGImages"]
    out: dict[int, Path] = {}
    for vid, info in sorted(gt.videos.items()):
        names = files.get(vid)
        found = None
        for root in roots:
            if isinstance(names, list) and names:
                folder = root / Path(names[0]).parent
                if folder != root and folder.is_dir():
                    have, want = set(_frame_names(folder)), {Path(n).name for n in names}
                    if have != want:
                        raise InputError(f"video {info.name}: {folder} holds {len(have)} frames but the "
                                         f"annotations list {len(want)} (every frame of the folder must "
                                         "be annotated)")
                    found = folder
                    break
            files_here = [root / f"{info.name}{e}" for e in VIDEO_EXTS]
            found = next((f for f in files_here if f.is_file()), None)
            if found:
                break
        if found is None:
            raise InputError(f"{gt_path}: video {info.name!r} not found (looked for its frame folder or "
                             f"{info.name}.mp4 under {', '.join(map(str, roots))}; pass --images)")
        out[vid] = found
    return out


def run_pair(model, video: Path, text: str, info, device=None, precision: str = "fp32") -> dict:
    """Text on frame 0, forward propagation over the whole video: the ``results().to_json()``
    document of the session (frames -> objects with id, score, box, RLE)."""
    from ..inference.video import VideoSession

    with VideoSession(model, str(video), device=device, precision=precision) as s:
        if s.num_frames != info.length or tuple(s.size) != (info.height, info.width):
            raise InputError(f"video {info.name}: {video} has {s.num_frames} frames of "
                             f"{s.size[1]}x{s.size[0]} but the annotations say {info.length} of "
                             f"{info.width}x{info.height}")
        s.add_text(text, frame=0)
        for _ in s.propagate("forward"):
            pass
        return s.results().to_json()


class PairWriter:
    """Resumable per-pair store: ``<path>.partial.jsonl`` has a header line (``key``: what the
    predictions depend on, e.g. the GT file's hash and the model) and one line per finished
    (video, phrase) pair.  A torn last line (crash) is dropped; a header from another key is
    an :class:`InputError` (use another ``--out``).  :meth:`finalize` writes the flat YTVIS
    results list of the requested pairs to ``path`` atomically."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path = Path(path)
        self.partial = Path(f"{self.path}.partial.jsonl")
        self.key = key
        self.records: dict[PairKey, list[dict]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.partial.exists() or not self._load()
        self._fh = open(self.partial, "w" if new else "a", encoding="utf-8")
        if new:
            self._line({"header": key})

    def _load(self) -> bool:
        raw = self.partial.read_bytes()
        good = raw.rfind(b"\n") + 1  # after the last newline: a line torn by a crash
        lines = [x for x in raw[:good].split(b"\n") if x.strip()]
        if not lines:
            return False
        try:
            head = json.loads(lines[0]).get("header")
            for n, line in enumerate(lines[1:], 2):
                rec = json.loads(line)
                self.records[(int(rec["video_id"]), int(rec["category_id"]))] = list(rec["predictions"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{self.partial}: corrupt ({e}); delete it to start over") from None
        if head != self.key:
            raise InputError(f"{self.partial} holds predictions of another run ({head}); use another "
                             "--out or delete it")
        if good < len(raw):
            with open(self.partial, "r+b") as f:
                f.truncate(good)
        return True

    def _line(self, obj) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()

    def __contains__(self, key: PairKey) -> bool:
        return key in self.records

    def write(self, video_id: int, category_id: int, predictions: list[dict]) -> None:
        self._line({"video_id": video_id, "category_id": category_id, "predictions": predictions})
        self.records[(video_id, category_id)] = predictions

    def close(self) -> None:
        self._fh.close()

    def finalize(self, pairs: Iterable[PairKey]) -> list[dict]:
        from ..atomic import atomic_write

        preds = [p for k in pairs for p in self.records.get(k, [])]
        atomic_write(self.path, lambda t: Path(t).write_text(json.dumps(preds)))
        return preds


def predict_videos(model, gt_path: Path, gt, videos: dict[int, Path], out_path: Path,
                   model_name: str = "", device=None, precision: str = "fp32",
                   progress: bool = True) -> list[dict]:
    """Run ``model`` on every (video, phrase) pair of ``gt`` (its ``video_np_pairs``, or the
    pairs with GT masklets when it has none), skipping pairs finished by an earlier run into
    the same ``out_path``; returns the YTVIS results list (also written to ``out_path``)."""
    from tqdm import tqdm

    from .video import track_json_to_ytvis

    pairs = gt.np_pairs if gt.has_np_pairs else sorted(k for k, v in gt.masklets.items() if v)
    writer = PairWriter(out_path, {"gt": file_hash(gt_path), "model": model_name, "precision": precision})
    try:
        todo = [k for k in pairs if k not in writer]
        if len(todo) < len(pairs):
            print(f"resuming: {len(pairs) - len(todo)} of {len(pairs)} video-phrase pairs already done")
        for vid, cid in tqdm(todo, desc="video-phrase pairs", unit="pair", disable=not progress):
            info = gt.videos[vid]
            doc = run_pair(model, videos[vid], gt.phrase(cid), info, device, precision)
            writer.write(vid, cid, track_json_to_ytvis(doc, vid, cid, info.length))
        return writer.finalize(pairs)
    finally:
        writer.close()


def model_label(spec: str) -> str:
    """What a checkpoint argument stands for in the resume key ('' = the shipped model)."""
    if not spec:  # the shipped weights change between releases: key them by file too
        from ..build import default_weights_path

        spec = os.fspath(default_weights_path())
    p = Path(spec)
    if p.is_file():
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return os.fspath(spec)
