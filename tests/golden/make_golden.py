"""Record the shipped model's outputs on the shipped examples (tests/golden/shipped_outputs.json).

Run after changing the shipped weights:  python tests/golden/make_golden.py
"""

import json
from pathlib import Path

import torch

from conceptseg import ImagePredictor, load
from conceptseg.cli.demo import examples_dir

OUT = Path(__file__).with_name("shipped_outputs.json")


def record() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine
    try:
        return _record()
    finally:
        torch.set_num_threads(threads)


def _record() -> dict:
    pred = ImagePredictor(load())
    prompts = json.loads((examples_dir() / "prompts.json").read_text())
    doc = {}
    for name, texts in prompts.items():
        if name.endswith(".mp4"):
            continue
        pred.set_image(examples_dir() / name)
        for r in pred.predict(text=texts, threshold=0.0):
            top = slice(0, 5)
            doc[f"{name}|{r.text}"] = {
                "presence": r.presence,
                "scores": r.scores[top].tolist(),
                "boxes": r.boxes[top].tolist(),
                "mask_areas": r.masks[top].flatten(1).sum(1).tolist(),
            }
    doc.update(_record_video(prompts))
    return doc


def _record_video(prompts: dict, frames: int = 8) -> dict:
    """The shipped clip, first prompt, first ``frames`` frames: ids and mask areas per frame."""
    from conceptseg.build import load_video_model
    from conceptseg.inference.video import VideoSession

    clips = [n for n in prompts if n.endswith(".mp4")]
    if not clips:
        return {}
    name, text = clips[0], prompts[clips[0]][0]
    out = {}
    with VideoSession(load_video_model(), examples_dir() / name,
                      file_preprocessing="torchcodec") as s:
        s.add_text(text, frame=0)
        for t, objs in s.propagate("forward", max_frames=frames):
            out[f"video|{name}|{text}|{t}"] = {
                "obj_ids": objs.obj_ids.tolist(),
                "scores": objs.scores.tolist(),
                "mask_areas": objs.masks.flatten(1).sum(1).tolist(),
            }
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(record(), indent=1))
    print(f"wrote {OUT}")
