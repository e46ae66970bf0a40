"""Process-level helpers every front end shares: the device a user names, progress bars that
stay off non-terminal logs, output paths checked before any work."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import InputError

__all__ = ["resolve_device", "progress", "check_output_path"]


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' -> a usable torch.device, or a one-line InputError when
    this torch build or machine has no such device (instead of torch's AssertionError later)."""
    if spec is None or spec == "":
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {spec!r} (expected cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r}: this torch build or machine has no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {spec!r}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {spec!r} is not supported (cpu, cuda, cuda:N or mps)")
    return dev


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm on stderr that draws only on a terminal: logs and pipes get no ``\\r`` lines.
    ``disable=True`` still turns it off everywhere."""
    kwargs.setdefault("file", sys.stderr)
    kwargs["disable"] = kwargs.get("disable", False) or not _isatty(kwargs["file"])
    return tqdm(iterable, **kwargs)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def check_output_path(path: str | os.PathLike, what: str = "output", *,
                      directory: bool = False) -> Path:
    """Fail before any work when ``path`` cannot be written: a file path that is a directory,
    a missing or unwritable parent. ``directory=True``: ``path`` is a folder to create or
    reuse. Returns the path."""
    p = Path(path)
    if directory:
        if p.exists() and not p.is_dir():
            raise InputError(f"{what} {p}: exists and is not a directory")
        probe = p if p.exists() else _existing_parent(p)
    else:
        if p.is_dir():
            raise InputError(f"{what} {p}: is a directory, expected a file path")
        probe = _existing_parent(p)
        if not probe.is_dir():
            raise InputError(f"{what} {p}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK) or _is_pseudo_fs(probe):
        raise InputError(f"{what} {p}: {probe} is not writable")
    return p


def _existing_parent(p: Path) -> Path:
    q = p.absolute().parent
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _is_pseudo_fs(p: Path) -> bool:
    """/proc and /sys answer os.access() with yes for root but refuse new files."""
    parts = p.absolute().parts
    return len(parts) > 1 and parts[1] in ("proc", "sys")
