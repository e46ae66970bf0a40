"""Reading evaluation inputs: JSON / JSONL files, the small value checks every loader shares
(image ground truth and predictions, video ground truth and predictions) and the size of a
``--data synthetic:N`` split."""

from __future__ import annotations

import json
import math
import os
from numbers import Real
from typing import Any, Mapping, Union

from ..errors import EvalInputError, InputError

__all__ = ["PathLike", "load_json", "load_source", "is_int", "is_number", "check_box", "synthetic_count"]

PathLike = Union[str, "os.PathLike[str]"]


def load_json(path: PathLike) -> Any:
    """Read a ``.json`` file, or a ``.jsonl`` file as a list of its non-empty lines."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                return [json.loads(line) for line in f if line.strip()]
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{path}: invalid JSON ({e})") from e
    except OSError as e:
        raise EvalInputError(f"{path}: cannot read ({e.strerror or e})") from None


def load_source(obj: PathLike | Mapping[str, Any] | Any, what: str) -> tuple[Any, str]:
    """(JSON object, name for messages): a path is read, anything else is taken as loaded."""
    if isinstance(obj, (str, os.PathLike)):
        return load_json(obj), os.fspath(obj)
    return obj, what


def is_int(v: Any) -> bool:
    """A plain int (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def check_box(box: Any) -> str | None:
    """Return a problem description for a malformed xywh box, else None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"bbox must be [x, y, w, h], got {box!r}"
    if not all(is_number(v) for v in box):
        return f"bbox values must be finite numbers, got {box!r}"
    if box[2] < 0 or box[3] < 0:
        return f"bbox width/height must be >= 0, got {box!r}"
    return None


def synthetic_count(spec: str, default: int) -> int:
    """N of ``--data synthetic`` / ``synthetic:N`` (``default`` without it); N < 1 is refused."""
    head, _, n = spec.partition(":")
    if head != "synthetic" or (n and not n.isdigit()):
        raise InputError(f"--data {spec!r}: expected synthetic or synthetic:N")
    num = int(n) if n else default
    if num < 1:
        raise InputError(f"--data {spec!r}: the synthetic test split needs N >= 1 (synthetic:N)")
    return num
