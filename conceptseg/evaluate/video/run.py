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
  A :class:`~conceptseg.evaluate.writer.PairWriter` appends each finished pair to
  ``<out>.partial.jsonl``, so an interrupted run continues where it stopped; the flat YTVIS
  results list is written atomically at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...data.splits import TEST_SEED
from ...data.synthetic_video import write_video_dataset
from ...errors import InputError
from ...inference import video as video_inference  # looked up on use: tests stand in a session
from ...runtime import progress as progress_bar
from ...video.io import IMAGE_EXTS, VIDEO_EXTS
from ..inputs import synthetic_count
from ..writer import PairWriter, file_hash
from .ground_truth import VideoGroundTruth, VideoInfo
from .tracks import track_json_to_ytvis

__all__ = ["DEFAULT_NUM_VIDEOS", "DEFAULT_NUM_FRAMES", "MIN_NUM_FRAMES", "synthetic_video_test_set",
           "resolve_videos", "run_pair", "predict_videos", "predicted_pairs"]

DEFAULT_NUM_VIDEOS = 20
DEFAULT_NUM_FRAMES = 12
MIN_NUM_FRAMES = 2  # the video data engine moves objects in and out: it needs two frames


def synthetic_video_test_set(spec: str, out: Path, image_size: int,
                             num_frames: int = DEFAULT_NUM_FRAMES) -> Path:
    """'synthetic' or 'synthetic:N' (default N = 20 videos): the held-out synthetic video test
    split at ``image_size``, written once under ``out/`` and reused by later runs."""
    num = synthetic_count(spec, DEFAULT_NUM_VIDEOS)
    if num_frames < MIN_NUM_FRAMES:
        raise InputError(f"synthetic test videos need at least {MIN_NUM_FRAMES} frames, got {num_frames}")
    path = out / f"synthetic_video_test_{num}x{num_frames}_{image_size}px" / "annotations.json"
    if not path.exists():  # annotations.json is written (atomically) after every frame
        write_video_dataset(path.parent, num, seed=TEST_SEED, num_frames=num_frames,
                            image_size=image_size, split="test")
    return path


def _frame_names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]


def resolve_videos(gt_path: Path, gt: VideoGroundTruth, images: str | None = None) -> dict[int, Path]:
    """Video id -> frame folder or video file, for every video of ``gt``.  A frame folder must
    hold exactly the frames its ``file_names`` list (subsampled annotations are not supported),
    a video file is accepted as is (its length is checked when it is opened)."""
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


def run_pair(model, video: Path, text: str, info: VideoInfo, device=None, precision: str = "fp32") -> dict:
    """Text on frame 0, forward propagation over the whole video: the ``results().to_json()``
    document of the session (frames -> objects with id, score, box, RLE)."""
    with video_inference.VideoSession(model, str(video), device=device, precision=precision) as s:
        if s.num_frames != info.length or tuple(s.size) != (info.height, info.width):
            raise InputError(f"video {info.name}: {video} has {s.num_frames} frames of "
                             f"{s.size[1]}x{s.size[0]} but the annotations say {info.length} of "
                             f"{info.width}x{info.height}")
        s.add_text(text, frame=0)
        for _ in s.propagate("forward"):
            pass
        return s.results().to_json()


def predicted_pairs(gt: VideoGroundTruth):
    """The pairs a model run predicts: ``video_np_pairs``, or the pairs with GT masklets when
    the file has none."""
    return gt.np_pairs if gt.has_np_pairs else sorted(k for k, v in gt.masklets.items() if v)


def predict_videos(model, gt_path: Path, gt: VideoGroundTruth, videos: dict[int, Path], out_path: Path,
                   model_name: str = "", device=None, precision: str = "fp32",
                   progress: bool = True) -> list[dict]:
    """Run ``model`` on every (video, phrase) pair of ``gt`` (:func:`predicted_pairs`), skipping
    pairs finished by an earlier run into the same ``out_path``; returns the YTVIS results list
    (also written to ``out_path``)."""
    pairs = predicted_pairs(gt)
    writer = PairWriter(out_path, {"gt": file_hash(gt_path), "model": model_name, "precision": precision})
    try:
        todo = [k for k in pairs if k not in writer]
        if len(todo) < len(pairs):
            print(f"resuming: {len(pairs) - len(todo)} of {len(pairs)} video-phrase pairs already done")
        for vid, cid in progress_bar(todo, desc="video-phrase pairs", unit="pair", disable=not progress):
            info = gt.videos[vid]
            doc = run_pair(model, videos[vid], gt.phrase(cid), info, device, precision)
            writer.write(vid, cid, track_json_to_ytvis(doc, vid, cid, info.length))
        return writer.finalize(pairs)
    finally:
        writer.close()
