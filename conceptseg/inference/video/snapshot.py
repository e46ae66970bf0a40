"""Saving and restoring a :class:`~.state.SessionState` (not the model, not the video).

Format: one ``torch.save`` file of plain containers only (dict, list, str, int, float, bool,
None, tensors), read back with ``torch.load(weights_only=True)``. Why this and not
safetensors + JSON: the state mixes many small tensors (bf16 memories included) with nested
containers keyed by ints and tuples; one file keeps both exactly, and ``weights_only`` loading
runs no code from the file, which is what safetensors would buy us. Dataclasses, tuples, sets
and dicts are written as tagged dicts (``{"__dc__": name, ...}``, ``{"__set__": [...]}``...);
frame memories shared between a bank and its anchor are written once and referenced by index,
so the restored state shares them as the saved one did. Tensors keep their dtype; tensors that
lived on an accelerator are moved to the restoring session's device, CPU tensors stay on CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...atomic import atomic_write
from ...errors import InputError
from ...tracker.bank import FrameMemory, MemoryBank
from ..concept import Concept, ConceptSource
from .association_state import AssociationConfig, AssociationState
from .results import StoredFrame
from .state import Group, SessionState, TrackedConcept

__all__ = ["save_state", "load_state", "FORMAT", "VERSION"]

FORMAT = "conceptseg.video_session_state"
VERSION = 2  # 2: several concepts (SessionState.concepts); 1 held one prompt's fields
_TYPES = {c.__name__: c for c in (SessionState, TrackedConcept, Group, AssociationState,
                                  AssociationConfig, MemoryBank, FrameMemory, StoredFrame,
                                  Concept, ConceptSource)}


class _Encoder:
    def __init__(self):
        self.memories: list = []
        self._index: dict[int, int] = {}

    def __call__(self, x):
        if isinstance(x, FrameMemory):
            k = self._index.get(id(x))
            if k is None:
                k = self._index[id(x)] = len(self.memories)
                self.memories.append(None)
                self.memories[k] = self._dataclass(x)
            return {"__mem__": k}
        if isinstance(x, Tensor):
            return {"__t__": x.detach().cpu(), "acc": x.device.type != "cpu"}
        if dataclasses.is_dataclass(x):
            return self._dataclass(x)
        if isinstance(x, dict):
            return {"__dict__": [[self(k), self(v)] for k, v in x.items()]}
        if isinstance(x, (set, frozenset)):
            return {"__set__": [self(v) for v in sorted(x)]}
        if isinstance(x, tuple):
            return {"__tuple__": [self(v) for v in x]}
        if isinstance(x, list):
            return [self(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot save a {type(x).__name__} in a session state")

    def _dataclass(self, x) -> dict:
        name = type(x).__name__
        if _TYPES.get(name) is not type(x):
            raise TypeError(f"cannot save a {name} in a session state")
        return {"__dc__": name, "f": {f.name: self(getattr(x, f.name))
                                      for f in dataclasses.fields(x)}}


class _Decoder:
    def __init__(self, memories: list, device: torch.device):
        self.device = device
        self.raw = memories
        self.memories: dict[int, FrameMemory] = {}

    def __call__(self, x):
        if isinstance(x, list):
            return [self(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__mem__" in x:
            k = x["__mem__"]
            if k not in self.memories:
                self.memories[k] = self(self.raw[k])
            return self.memories[k]
        if "__t__" in x:
            return x["__t__"].to(self.device) if x["acc"] else x["__t__"]
        if "__dc__" in x:
            return _TYPES[x["__dc__"]](**{k: self(v) for k, v in x["f"].items()})
        if "__dict__" in x:
            return {self(k): self(v) for k, v in x["__dict__"]}
        if "__set__" in x:
            return {self(v) for v in x["__set__"]}
        if "__tuple__" in x:
            return tuple(self(v) for v in x["__tuple__"])
        raise ValueError(f"unknown entry {sorted(x)}")


def save_state(state: SessionState, path) -> Path:
    """Write ``state`` to ``path`` atomically (no pass may be running: see
    :meth:`VideoSession.save_state`). Returns the path."""
    enc = _Encoder()
    body = enc(dataclasses.replace(state, running_pass=None))
    doc = {"format": FORMAT, "version": VERSION, "state": body, "memories": enc.memories}
    return atomic_write(Path(path), lambda tmp: torch.save(doc, tmp))


def load_state(path, device: torch.device | str = "cpu") -> SessionState:
    """Read a state written by :func:`save_state` (accelerator tensors onto ``device``)."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"session state not found: {path}") from None
    except Exception as e:  # a pickle of something else, a truncated file...
        raise InputError(f"{path}: not a saved video session state ({e.__class__.__name__})") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not a saved video session state")
    if doc.get("version") != VERSION:
        raise InputError(f"{path}: session state version {doc.get('version')} is not "
                         f"supported (this conceptseg reads version {VERSION})")
    try:
        state = _Decoder(doc["memories"], torch.device(device))(doc["state"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{path}: corrupt session state ({e})") from None
    if not isinstance(state, SessionState):
        raise InputError(f"{path}: not a saved video session state")
    return state
