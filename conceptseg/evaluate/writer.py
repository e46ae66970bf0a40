"""Streamed, resumable writer of COCO-style prediction results.

Long benchmark runs (SA-Co/Gold has ~170k datapoints) must survive crashes.  The
writer appends one JSON line per *finished datapoint* to ``<path>.partial.jsonl``::

    {"image_id": 17, "predictions": [{"image_id": 17, "score": 0.9, "segmentation": {...}}, ...]}

so a datapoint is either fully recorded or not at all (a line cut short by a crash is
dropped on resume).  Datapoints with no predictions are recorded too, so negatives are
not recomputed.  :meth:`PredictionWriter.finalize` writes the flat COCO results list to
``path`` atomically (temporary file + ``os.replace``).

Example::

    with PredictionWriter("preds.json") as w:
        for dp in datapoints:
            if dp.id in w:
                continue                      # done before the crash
            w.write(dp.id, predict(dp))
    w.finalize()
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["PredictionWriter", "file_hash"]


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and bytes (RLE counts) to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode("ascii")
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return obj.item()  # 0-d torch tensors
    return obj


def file_hash(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes: what resume keys record about a ground-truth file."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class PredictionWriter:
    """Append predictions per datapoint to ``path + '.partial.jsonl'``; resume; finalize.

    Args:
        path: final COCO results JSON path.
        resume: if True (default) read an existing partial file and skip its datapoints;
            if False an existing partial file is discarded.
        fsync: call ``os.fsync`` after every datapoint (durable against power loss; slower).
        key: what the predictions depend on (e.g. the GT file's hash and the model); written as
            the partial file's first line, and a partial file with another key is refused
            instead of silently mixing two models' predictions.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = True, fsync: bool = False,
                 key: Mapping[str, Any] | None = None):
        self.path = os.fspath(path)
        self.partial_path = self.path + ".partial.jsonl"
        self.fsync = fsync
        self.key = dict(key) if key is not None else None
        self._records: dict[int, list[dict]] = {}
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        if resume and os.path.exists(self.partial_path):
            self._load_partial()
        elif os.path.exists(self.partial_path):
            os.remove(self.partial_path)
        fresh = not os.path.exists(self.partial_path) or os.path.getsize(self.partial_path) == 0
        self._fh = open(self.partial_path, "a", encoding="utf-8")
        if fresh and self.key is not None:
            self._fh.write(json.dumps({"header": self.key}, separators=(",", ":")) + "\n")
            self._fh.flush()

    # ------------------------------------------------------------------ resume
    def _load_partial(self) -> None:
        from .io import EvalInputError  # lazy: io re-exports this module

        with open(self.partial_path, "rb") as f:
            data = f.read()
        # Everything after the last newline is a line torn by a crash: drop it.
        good_end = data.rfind(b"\n") + 1
        header = None
        for n, raw in enumerate(data[:good_end].split(b"\n")[:-1]):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if n == 0 and isinstance(rec, dict) and "header" in rec:
                    header = rec["header"]
                    continue
                self._records[int(rec["image_id"])] = list(rec["predictions"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise EvalInputError(f"{self.partial_path}: corrupt line {n + 1} ({e})", n, None) from e
        if self.key is not None and good_end and header != self.key:
            raise EvalInputError(f"{self.partial_path} holds predictions of another run "
                                 f"({header or 'no header'}); use another --out or delete it",
                                 0, None)
        if good_end < len(data):
            with open(self.partial_path, "r+b") as f:
                f.truncate(good_end)

    # ------------------------------------------------------------------ writing
    @property
    def done_ids(self) -> set[int]:
        """Datapoint ids already recorded (including ones with zero predictions)."""
        return set(self._records)

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def write(self, image_id: int, predictions: Iterable[Mapping[str, Any]]) -> None:
        """Record all predictions of one datapoint (``image_id`` is filled in if absent).

        Writing an id that is already recorded replaces it in the final output.
        """
        iid = int(image_id)
        preds = []
        for p in predictions:
            p = _jsonable(p)
            if p.setdefault("image_id", iid) != iid:
                raise ValueError(f"prediction for image_id {p['image_id']} passed to write({iid})")
            preds.append(p)
        line = json.dumps({"image_id": iid, "predictions": preds}, separators=(",", ":"))
        self._fh.write(line + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self._records[iid] = preds

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predictions(self) -> list[dict]:
        """All recorded predictions, datapoints in first-written order."""
        return [p for preds in self._records.values() for p in preds]

    def finalize(self, remove_partial: bool = False) -> str:
        """Atomically write the COCO results list to ``path`` and return it.

        The partial file is kept unless ``remove_partial`` (a later run with
        ``resume=True`` then finds every datapoint done).
        """
        self.close()
        tmp = f"{self.path}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.predictions(), f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if remove_partial and os.path.exists(self.partial_path):
            os.remove(self.partial_path)
        return self.path
