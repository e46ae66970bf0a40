"""Checkpoint layouts: the official ``sam3.pt``, the transformers / HF ``facebook/sam3``
safetensors, and our own safetensors (config inside). Loading is strict and errors are one line.

Internally every layout is first turned into the *official image layout* (the keys of
``Sam3Detector.state_dict()``, i.e. official keys without ``detector.``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .config import PRESETS, Sam3Config
from .atomic import atomic_write
from .errors import CheckpointError

Layout = Literal["ours", "official", "hf"]
OURS_FORMAT = "conceptseg/1"
# Tensors that some layouts do not store and that never change outputs: RoPE factors are
# recomputed from the config; point projections are unused by concept segmentation.
DERIVABLE = ("attn.freqs_cis", "geometry_encoder.points_")


# -- reading ----------------------------------------------------------------------------------
def _read_raw(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Return (tensors, safetensors metadata) without interpreting the layout."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        files = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.pt"))
        if not files:
            raise CheckpointError(f"no .safetensors or .pt file in directory {p}")
        merged: dict[str, Tensor] = {}
        meta: dict[str, str] = {}
        for f in files:
            sd, m = _read_raw(f)
            merged.update(sd)
            meta.update(m)
        return merged, meta
    with open(p, "rb") as fh:
        head = fh.read(9)
    size = p.stat().st_size
    if size < 16:
        raise CheckpointError(f"{p} is not a checkpoint ({size} bytes)")
    # safetensors: a little-endian u64 header length, then the JSON header. Test for it first:
    # the length's low byte can be 0x80, which is also how a legacy pickle starts
    n = int.from_bytes(head[:8], "little")
    is_safetensors = head[8:9] == b"{" and 8 + n <= size
    if not is_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):  # torch zip / pickle
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=head[:2] == b"PK")
        except Exception as e:  # truncated zip, foreign pickle, ...
            raise CheckpointError(f"cannot read {p} as a torch checkpoint (truncated or corrupt?): "
                                  f"{str(e).splitlines()[0][:200]}") from None
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            obj = obj["model"]
        if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
            raise CheckpointError(f"{p} holds no state dict (expected a dict of tensors)")
        return obj, {}
    try:
        from safetensors import safe_open

        tensors, meta = {}, {}
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        return tensors, meta
    except Exception as e:
        raise CheckpointError(f"{p} is neither a torch checkpoint nor a readable safetensors file "
                              f"(truncated or corrupt?): {str(e).splitlines()[0][:200]}") from None


def _is_derivable(key: str) -> bool:
    return any(d in key for d in DERIVABLE)


def _shape_signature(sd: dict[str, Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in sd.items() if not _is_derivable(k)}


_PRESET_SHAPES: dict[str, dict[str, tuple]] = {}


def _preset_shapes(name: str) -> dict[str, tuple]:
    if name not in _PRESET_SHAPES:
        from .model.detector import Sam3Detector

        with torch.device("meta"):
            model = Sam3Detector(PRESETS[name]())
        _PRESET_SHAPES[name] = _shape_signature(model.state_dict())
    return _PRESET_SHAPES[name]


def infer_config(sd: dict[str, Tensor]) -> Sam3Config:
    """Find the preset whose tensor names and shapes equal those of an official-layout state
    dict. Attention head counts are not visible in shapes, so unknown sizes need a config."""
    sig = _shape_signature(sd)
    best, best_diff = None, None
    for name in PRESETS:
        ref = _preset_shapes(name)
        diff = {k for k in ref.keys() | sig.keys() if ref.get(k) != sig.get(k)}
        if not diff:
            return PRESETS[name]()
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = name, diff
    assert best_diff is not None
    if len(best_diff) > 0.5 * max(len(sig), 1):
        example = sorted(sig)[:2]
        raise CheckpointError(f"not a SAM 3 image-model checkpoint: keys such as {example} do not "
                              "belong to any known layout")
    raise CheckpointError(f"checkpoint sizes match no preset (closest {best!r} differs in "
                          f"{len(best_diff)} tensors, e.g. {sorted(best_diff)[:3]}); pass a "
                          "config (--config config.json) for custom sizes")


def to_official_image_layout(sd: dict[str, Tensor], meta: dict[str, str] | None = None
                             ) -> tuple[dict[str, Tensor], Layout]:
    """Detect the layout and return (official image-layout state dict, detected layout)."""
    meta = meta or {}
    if meta.get("format") == OURS_FORMAT:
        return sd, "ours"
    keys = list(sd)
    if any(k.startswith("detector.") for k in keys):
        # Full official checkpoint: keep the detector, drop the tracker and the tracker's FPN
        # copy (sam2_convs), as the official image builder does.
        out = {k[len("detector."):]: v for k, v in sd.items()
               if k.startswith("detector.") and ".sam2_convs." not in k}
        return out, "official"
    if any(k.startswith("backbone.vision_backbone.") for k in keys):
        return {k: v for k, v in sd.items() if ".sam2_convs." not in k}, "official"
    from . import checkpoint_hf

    if checkpoint_hf.looks_like_hf(keys):
        return checkpoint_hf.hf_to_official(sd), "hf"
    raise CheckpointError(f"not a SAM 3 checkpoint: unrecognised keys such as {keys[:2]}")


def check_state_dict(expected: dict[str, Tensor], got: dict[str, Tensor], source: str) -> None:
    """Strict comparison of names and shapes; raises CheckpointError naming the keys."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got)
                    if tuple(expected[k].shape) != tuple(got[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            if label == "mis-shaped":
                k = keys[0]
                shown += f" [{tuple(got[k].shape)} vs expected {tuple(expected[k].shape)}]"
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))


def load_detector(path: str | os.PathLike, config: Sam3Config | None = None,
                  device: str | torch.device = "cpu"):
    """Build a :class:`Sam3Detector` and load weights strictly from any supported layout.

    The model is built on the meta device and the (memory-mapped) tensors are assigned, so a
    3.4 GB checkpoint is not held twice.
    """
    from .model.detector import Sam3Detector

    raw, meta = _read_raw(path)
    sd, layout = to_official_image_layout(raw, meta)
    if config is None:
        config = (Sam3Config.from_dict(json.loads(meta["config"])) if layout == "ours"
                  else infer_config(sd))
    with torch.device("meta"):
        model = Sam3Detector(config)
    expected = model.state_dict()
    # Fill tensors that this layout does not store but that are derivable.
    fresh = None
    for k in expected:
        if k not in sd and _is_derivable(k):
            if fresh is None:
                fresh = _derivable_tensors(config)
            sd[k] = fresh[k]
    check_state_dict(expected, sd, str(path))
    sd = {k: v.to(dtype=expected[k].dtype) if v.dtype != expected[k].dtype else v
          for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device).eval()


def _derivable_tensors(config: Sam3Config) -> dict[str, Tensor]:
    from .checkpoint_hf import rope_buffers

    out = rope_buffers(config)
    d = config.d_model
    for name, shape in (("points_direct_project", (d, 2)), ("points_pool_project", (d, d)),
                        ("points_pos_enc_project", (d, d))):
        out[f"geometry_encoder.{name}.weight"] = torch.zeros(shape)
        out[f"geometry_encoder.{name}.bias"] = torch.zeros(d)
    return out


# -- writing ----------------------------------------------------------------------------------
def save_checkpoint(model_or_sd, path: str | os.PathLike, layout: Layout = "ours",
                    config: Sam3Config | None = None) -> Path:
    """Write weights in one of the layouts, atomically.

    ours: safetensors with the config in its metadata. official: ``torch.save({"model": ...})``
    with ``detector.``-prefixed keys (image model only; no tracker). hf: safetensors in the
    transformers ``Sam3Model`` naming.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if isinstance(model_or_sd, dict):
        sd = model_or_sd
        if config is None and layout == "ours":
            config = infer_config(sd)
    else:
        sd = model_or_sd.state_dict()
        config = config or model_or_sd.config
    sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    if layout != "ours" and config is not None and config.score_bias:
        import warnings

        warnings.warn(f"the {layout} layout has no place for score_bias={config.score_bias:g} "
                      "(a calibration constant of our config): the written weights score "
                      "without it", stacklevel=2)
    if layout == "ours":
        meta = {"format": OURS_FORMAT, "config": json.dumps(config.to_dict())}
        atomic_write(path, lambda t: save_file(sd, t, metadata=meta))
    elif layout == "official":
        atomic_write(path, lambda t: torch.save({"model": {f"detector.{k}": v for k, v in sd.items()}}, t))
    elif layout == "hf":
        from . import checkpoint_hf

        hf = {k: v.contiguous() for k, v in checkpoint_hf.official_to_hf(sd).items()}
        atomic_write(path, lambda t: save_file(hf, t, metadata={"format": "pt"}))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return path


def convert(src: str | os.PathLike, dst: str | os.PathLike, layout: Layout,
            config: Sam3Config | None = None) -> Layout:
    """Read any layout, write ``layout``. Returns the detected source layout."""
    raw, meta = _read_raw(src)
    sd, detected = to_official_image_layout(raw, meta)
    if config is None:
        config = (Sam3Config.from_dict(json.loads(meta["config"])) if detected == "ours"
                  else infer_config(sd))
    fresh = None
    if layout != "hf":
        for k in _preset_free_keys(config):
            if k not in sd:
                fresh = fresh or _derivable_tensors(config)
                sd[k] = fresh[k]
    save_checkpoint(sd, dst, layout, config)
    return detected


def _preset_free_keys(config: Sam3Config) -> list[str]:
    return list(_derivable_tensors(config))
