"""Assemble the shipped model: a trained detector + a tracker trained on the same ViT trunk.

    python -m conceptseg.train.ship --detector runs/tiny/model.safetensors \\
        --tracker runs/tiny-tracker/model.safetensors --out conceptseg/assets/tiny.safetensors

The tracker stage (``conceptseg train --stage tracker``) writes a video checkpoint whose detector
is the one it started from; when the detector went on training with its trunk frozen (the
recipe in RECIPE.md), this takes the newer detector and the trained tracker + tracker neck and
writes one video checkpoint (our layout, float16 by default to stay well inside the package's
25 MB budget; loading casts back to float32). The tracker reads the trunk's output, so the
trunks of both inputs must be identical: it refuses otherwise.
"""

from __future__ import annotations

import argparse

from ..errors import InputError

__all__ = ["assemble"]

TRUNK = "backbone.vision_backbone.trunk."


def assemble(detector_path: str, tracker_path: str, out: str, half: bool = True,
             allow_trunk_mismatch: bool = False):
    from ..build import load, load_video_model, save_video_checkpoint

    video = load_video_model(tracker_path)
    detector = load(detector_path)
    new, old = detector.state_dict(), video.detector.state_dict()
    if new.keys() != old.keys():
        raise InputError("the detector and the tracker checkpoint's detector differ in layout")
    diff = max((float((new[k] - old[k]).abs().max()) for k in new if k.startswith(TRUNK)),
               default=0.0)
    if diff > 0 and not allow_trunk_mismatch:
        raise InputError(f"the ViT trunks differ (max |diff| {diff:.3g}): the tracker was trained "
                         "on another trunk; retrain it or pass --allow-trunk-mismatch")
    # the whole detector, not just its weights: its config may carry a calibrated score_bias
    video.detector = detector.to(next(video.tracker.parameters()).device)
    path = save_video_checkpoint(video, out, half=half)
    return path, diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", required=True)
    p.add_argument("--tracker", required=True, help="video checkpoint from --stage tracker")
    p.add_argument("--out", required=True)
    p.add_argument("--fp32", action="store_true", help="store float32 (default float16)")
    p.add_argument("--allow-trunk-mismatch", action="store_true")
    a = p.parse_args(argv)
    path, diff = assemble(a.detector, a.tracker, a.out, half=not a.fp32,
                          allow_trunk_mismatch=a.allow_trunk_mismatch)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; trunk max |diff| {diff:.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
