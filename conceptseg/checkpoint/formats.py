"""What a checkpoint file is, decided in one place: its file format (safetensors, torch zip or
pickle, a directory of either), its layout (ours, official, HF) and whether it carries a tracker;
and its tensors read into our module naming (:class:`Parts`), whatever the layout.

File formats are told apart by their bytes, never by their name or first byte alone: a
safetensors file starts with its header's length (u64, little endian) followed by ``{``; that
length's low byte can be ``0x80``, which is also how a legacy pickle starts, so safetensors is
tested first.

Layouts (the key tables live in :mod:`.official`, :mod:`.hf` and :mod:`.hf_tracker`):

* **ours**: safetensors whose metadata has ``format = conceptseg/1`` and the ``config`` (and,
  for a video model, ``tracker_config``); tensor names are the official ones, the image model's
  unprefixed (so a video file is also an image checkpoint);
* **official**: ``sam3.pt``: ``detector.*`` + ``tracker.*`` (or an unprefixed image state dict);
* **hf**: transformers' ``Sam3Model`` or ``Sam3VideoModel`` (``facebook/sam3``), a file or a
  directory of safetensors.

Official and HF files written by us carry our configs too (a ``conceptseg`` entry of the
``.pt`` dict, ``conceptseg_*`` metadata of the safetensors), which other readers ignore.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from torch import Tensor

from ..config import Sam3Config
from ..errors import CheckpointError
from ..tracker.config import TrackerConfig
from .hf import hf_to_official, looks_like_hf
from .hf_tracker import split as split_hf_tracker
from .official import looks_like_official
from .official import split as split_official

Layout = Literal["ours", "official", "hf"]
FileFormat = Literal["safetensors", "torch", "directory"]
OURS_FORMAT = "conceptseg/1"
CONFIG_KEY, TRACKER_CONFIG_KEY = "config", "tracker_config"
# where official / HF files written by us keep our configs (ignored by other readers)
PT_META_KEY = "conceptseg"  # an entry of the official .pt dict, next to "model"
HF_META_PREFIX = "conceptseg_"  # safetensors metadata conceptseg_config, ..._tracker_config


@dataclass
class Parts:
    """A checkpoint in our module naming, whatever its layout."""

    detector: dict[str, Tensor]  # Sam3Detector keys (the official image layout)
    tracker: dict[str, Tensor]  # Tracker keys ("tracker." stripped); empty: an image model
    neck: dict[str, Tensor]  # TrackerNeck keys ("sam2_convs.*"); empty with the tracker
    config: Sam3Config | None  # stored with the weights (ours, or written by us), else None
    tracker_config: TrackerConfig | None  # likewise, for the tracker
    layout: Layout  # the layout the file was in
    file_format: FileFormat  # how the file stored it
    source: str  # the path, for messages

    @property
    def has_tracker(self) -> bool:
        return bool(self.tracker)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype most of the stored weights have (float16 for the shipped model)."""
        counts: dict[torch.dtype, int] = {}
        for t in (*self.detector.values(), *self.tracker.values(), *self.neck.values()):
            if t.is_floating_point():
                counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
        return max(counts, key=counts.get) if counts else torch.float32


def sniff(path: Path) -> FileFormat:
    """The file format of ``path`` by its bytes (see the module docstring)."""
    if path.is_dir():
        return "directory"
    size = path.stat().st_size
    if size < 16:
        raise CheckpointError(f"{path} is not a checkpoint ({size} bytes)")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch zip, legacy pickle
        return "torch"
    return "safetensors"  # let the reader say what is wrong with it


def read_raw(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str], FileFormat]:
    """(tensors, metadata, file format) of a file or directory, layout not interpreted."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    kind = sniff(p)
    if kind == "directory":
        files = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.pt"))
        if not files:
            raise CheckpointError(f"no .safetensors or .pt file in directory {p}")
        merged: dict[str, Tensor] = {}
        meta: dict[str, str] = {}
        for f in files:
            sd, m, _ = read_raw(f)
            merged.update(sd)
            meta.update(m)
        return merged, meta, kind
    if kind == "torch":
        return *_read_torch(p), kind
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{p} is neither a torch checkpoint nor a readable safetensors file "
                              f"(truncated or corrupt?): {_first_line(e)}") from None
    for key in (CONFIG_KEY, TRACKER_CONFIG_KEY):  # written by us into an HF file
        if HF_META_PREFIX + key in meta:
            meta.setdefault(key, meta[HF_META_PREFIX + key])
    return tensors, meta, kind


def _read_torch(p: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=_is_zip(p))
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise CheckpointError(f"cannot read {p} as a torch checkpoint (truncated or corrupt?): "
                              f"{_first_line(e)}") from None
    meta: dict[str, str] = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        extra = obj.get(PT_META_KEY)
        if isinstance(extra, dict):
            meta = {k: v for k, v in extra.items() if isinstance(v, str)}
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{p} holds no state dict (expected a dict of tensors)")
    return obj, meta


def _is_zip(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(2) == b"PK"


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def detect_layout(keys, meta: dict[str, str]) -> Layout:
    """The layout of a state dict by its metadata and key names."""
    if meta.get("format") == OURS_FORMAT:
        return "ours"
    if looks_like_official(keys):
        return "official"
    if looks_like_hf(keys):
        return "hf"
    raise CheckpointError(f"not a SAM 3 checkpoint: unrecognised keys such as {list(keys)[:2]}")


def read_checkpoint(path: str | os.PathLike) -> Parts:
    """Read any file or directory into :class:`Parts` (one-line CheckpointError otherwise)."""
    raw, meta, kind = read_raw(path)
    layout = detect_layout(raw, meta)
    source = str(path)
    try:
        if layout == "hf":
            det = hf_to_official(raw)
            trk, neck = split_hf_tracker(raw)
        else:
            det, trk, neck = split_official(raw, prefixed_detector=layout == "official")
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot read the {layout} layout: "
                              f"{_first_line(e)}") from None
    cfg, tcfg = _configs(meta, source)
    return Parts(det, trk, neck, cfg, tcfg, layout, kind, source)


def _configs(meta: dict[str, str], source: str) -> tuple[Sam3Config | None, TrackerConfig | None]:
    try:
        cfg = Sam3Config.from_dict(json.loads(meta[CONFIG_KEY])) if CONFIG_KEY in meta else None
        tcfg = (TrackerConfig.from_dict(json.loads(meta[TRACKER_CONFIG_KEY]))
                if TRACKER_CONFIG_KEY in meta else None)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: unreadable config in the metadata: {e}") from None
    return cfg, tcfg


def describe(path: str | os.PathLike) -> dict:
    """What :func:`read_checkpoint` found, as plain values (layout, file format, tracker, dtype)."""
    parts = read_checkpoint(path)
    return {"layout": parts.layout, "file_format": parts.file_format,
            "has_tracker": parts.has_tracker, "dtype": parts.dtype,
            "config": parts.config, "tracker_config": parts.tracker_config}
