"""Record the shipped model's outputs on the shipped examples (tests/golden/shipped_outputs.json).

Run after changing the shipped weights:  python tests/golden/make_golden.py
"""

import json
from pathlib import Path

import torch

from conceptseg import ImagePredictor, load
from conceptseg.demo import examples_dir

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
        pred.set_image(examples_dir() / name)
        for r in pred.predict(text=texts, threshold=0.0):
            top = slice(0, 5)
            doc[f"{name}|{r.text}"] = {
                "presence": r.presence,
                "scores": r.scores[top].tolist(),
                "boxes": r.boxes[top].tolist(),
                "mask_areas": r.masks[top].flatten(1).sum(1).tolist(),
            }
    return doc


if __name__ == "__main__":
    OUT.write_text(json.dumps(record(), indent=1))
    print(f"wrote {OUT}")
