"""Image benchmark: our predictor vs transformers' Sam3Model at equal (random) weights, fp32.

Both run in this process on the same 1008 px input (the full ``sam3`` config by default):
image encoding, one text prompt, and a second prompt on the cached image encoding; the peak
resident memory of each phase is sampled by a background thread. The weights are built once and
shared by both models (transformers receives views of our tensors), so each model's memory is
reported as weights + its own activation peak. Prints ratios ours / transformers.

    python bench/image.py                     # full sam3 config (~3.4 GB of weights, minutes)
    python bench/image.py --config fixture    # seconds, to check the script itself
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptseg.build import build_model  # noqa: E402
from conceptseg.inference.image import ImagePredictor  # noqa: E402
from conceptseg.inference.image_io import preprocess  # noqa: E402


def trim() -> None:
    """Return freed heap memory to the OS so that RSS measures live memory, not the allocator's
    cache (otherwise the second model's peak hides under the first one's freed pages)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every 5 ms while active; .peak is the maximum seen."""

    def __enter__(self):
        trim()
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())


def timed(fn, repeat: int = 1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_ours(model, rgb, texts, threshold):
    pred = ImagePredictor(model)
    res = {}
    with PeakRss() as mem:
        res["image"], _ = timed(lambda: pred.set_image(rgb))
        res["prompt1"], _ = timed(lambda: pred.predict(text=texts[0], threshold=threshold))
        res["prompt2"], _ = timed(lambda: pred.predict(text=texts[1], threshold=threshold))
    res["activation_peak"] = mem.peak - mem.start
    return res


def hf_postprocess(out, threshold, size):
    """The steps of transformers' ``Sam3ImageProcessor.post_process_instance_segmentation``
    (its module imports torchvision, which cannot be installed beside our torch): scores =
    sigmoid(logits) x sigmoid(presence), keep above threshold, sigmoid masks, bilinear resize of
    the kept masks to the image size, binarise at 0.5, scale boxes."""
    scores = out.pred_logits.sigmoid() * out.presence_logits.sigmoid()
    keep = scores[0] > threshold
    masks = out.pred_masks[0, keep].sigmoid()
    h, w = size
    boxes = out.pred_boxes[0, keep] * torch.tensor([w, h, w, h])
    if len(masks):
        masks = F.interpolate(masks[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores[0, keep], boxes, masks > 0.5


def run_hf(model, rgb, tokens, threshold):
    """transformers' user path: preprocessing (the same squash resize as ours), the vision
    encoder once, then per prompt the model plus instance post-processing at the image size."""
    res = {}
    size = rgb.shape[:2]

    def encode():
        pv = preprocess(rgb, model.config.vision_config.backbone_config.image_size)
        return model.get_vision_features(pixel_values=pv)

    with PeakRss() as mem, torch.inference_mode():
        res["image"], vis = timed(encode)
        for i, key in enumerate(("prompt1", "prompt2")):
            ids = tokens[i:i + 1]

            def prompt():
                out = model(vision_embeds=vis, input_ids=ids, attention_mask=(ids != 0).long())
                return hf_postprocess(out, threshold, size)
            res[key], _ = timed(prompt)
    res["activation_peak"] = mem.peak - mem.start
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="sam3")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best time kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hf_reference import build_hf_model  # test-only dependency: transformers

    base = rss_bytes()
    t0 = time.perf_counter()
    model = build_model(args.config, seed=0)
    weights = rss_bytes() - base
    print(f"built {args.config}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params "
          f"in {time.perf_counter() - t0:.0f} s, weights {weights / 2**30:.2f} GiB")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    texts = ["yellow school bus", "person"]
    hf = build_hf_model(model.config, model.state_dict(), share=True)
    from conceptseg.text.tokenizer import ClipTokenizer

    tokens = ClipTokenizer()(texts)
    # Alternate the two models and keep each phase's best time, so that load from other
    # processes on the machine hits both alike; memory is taken from the first round.
    runs_ours, runs_hf = [], []
    for _ in range(args.rounds):
        runs_ours.append(run_ours(model, rgb, texts, args.threshold))
        runs_hf.append(run_hf(hf, rgb, tokens, args.threshold))
    for i, (a, b) in enumerate(zip(runs_ours, runs_hf)):
        print(f"round {i}: ours " + " ".join(f"{k} {v:.3f}" for k, v in a.items() if k != "activation_peak")
              + " | transformers " + " ".join(f"{k} {v:.3f}" for k, v in b.items() if k != "activation_peak"))
    ours = {k: min(r[k] for r in runs_ours) for k in runs_ours[0]}
    theirs = {k: min(r[k] for r in runs_hf) for k in runs_hf[0]}
    ours["activation_peak"] = runs_ours[0]["activation_peak"]
    theirs["activation_peak"] = runs_hf[0]["activation_peak"]

    print(f"\ntorch {torch.__version__}, {args.threads} threads, best of {args.rounds}, fp32, input 1024x768 -> "
          f"{model.config.vision.image_size}^2\n")
    print(f"{'phase':<28}{'ours':>12}{'transformers':>14}{'ratio':>8}")
    for key, label in (("image", "image encoding (s)"), ("prompt1", "first prompt (s)"),
                       ("prompt2", "second prompt, cached (s)")):
        print(f"{label:<28}{ours[key]:>12.3f}{theirs[key]:>14.3f}{ours[key] / theirs[key]:>8.2f}")
    ours_peak = weights + ours["activation_peak"]
    hf_peak = weights + theirs["activation_peak"]
    print(f"{'peak RSS, weights+act (GiB)':<28}{ours_peak / 2**30:>12.2f}{hf_peak / 2**30:>14.2f}"
          f"{ours_peak / hf_peak:>8.2f}")
    print(f"{'activation peak (GiB)':<28}{ours['activation_peak'] / 2**30:>12.2f}"
          f"{theirs['activation_peak'] / 2**30:>14.2f}"
          f"{ours['activation_peak'] / max(theirs['activation_peak'], 1):>8.2f}")


if __name__ == "__main__":
    main()
