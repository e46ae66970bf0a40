"""Streamed, resumable writers of predictions: per datapoint (images) and per (video, phrase)
pair (videos), over one append-only log.

Long benchmark runs (SA-Co/Gold has ~170k datapoints) must survive crashes.  A writer appends
one JSON line per *finished datapoint* (or pair) to ``<path>.partial.jsonl``::

    {"header": {"gt": "<sha1>", "model": "..."}}            (optional: what the run depends on)
    {"image_id": 17, "predictions": [{"image_id": 17, "score": 0.9, "segmentation": {...}}, ...]}

so a datapoint is either fully recorded or not at all (a line cut short by a crash is
dropped on resume).  Datapoints with no predictions are recorded too, so negatives are
not recomputed.  ``finalize`` writes the flat results list to ``path`` atomically.

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
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping

import numpy as np

from ..atomic import atomic_write
from ..build import default_weights_path
from ..errors import EvalInputError

__all__ = ["ResumableLog", "PredictionWriter", "PairWriter", "file_hash", "model_label"]

PairKey = tuple[int, int]  # (video_id, category_id)


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


def model_label(spec: str) -> str:
    """What a checkpoint argument stands for in a resume key ('' = the shipped model): a file
    by its resolved path, size and modification time."""
    if not spec:  # the shipped weights change between releases: key them by file too
        spec = os.fspath(default_weights_path())
    p = Path(spec)
    if p.is_file():
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return os.fspath(spec)


class ResumableLog:
    """Append-only JSON-lines log of finished records, each ``{<id fields>, "predictions": [...]}``.

    Args:
        path: the ``.partial.jsonl`` file.
        record_id: the id of a record line (``image_id``; ``(video_id, category_id)``).
        key: what the records depend on (GT hash, model); written as the first line, and a log
            with another key is refused instead of silently mixing two runs' predictions.
        resume: read an existing log (True) or discard it (False).
        fsync: ``os.fsync`` after every record (durable against power loss; slower).
    """

    def __init__(self, path: str | os.PathLike, record_id: Callable[[dict], Hashable], *,
                 key: Mapping[str, Any] | None = None, resume: bool = True, fsync: bool = False):
        self.path = os.fspath(path)
        self.record_id = record_id
        self.key = dict(key) if key is not None else None
        self.fsync = fsync
        self.records: dict[Hashable, list[dict]] = {}  # id -> its predictions, first-written order
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if resume and os.path.exists(self.path):
            self._load()
        elif os.path.exists(self.path):
            os.remove(self.path)
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self.fh = open(self.path, "a", encoding="utf-8")
        if fresh and self.key is not None:
            self._line({"header": self.key})

    def _load(self) -> None:
        with open(self.path, "rb") as f:
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
                self.records[self.record_id(rec)] = list(rec["predictions"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise EvalInputError(f"{self.path}: corrupt line {n + 1} ({e}); delete it to start over",
                                     n, None) from None
        if self.key is not None and good_end and header != self.key:
            raise EvalInputError(f"{self.path} holds predictions of another run "
                                 f"({header or 'no header'}); use another --out or delete it", 0, None)
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def _line(self, obj: Any) -> None:
        self.fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.fh.flush()
        if self.fsync:
            os.fsync(self.fh.fileno())

    def append(self, record: dict) -> None:
        """Record one finished datapoint / pair (a later record of the same id replaces it)."""
        self._line(record)
        self.records[self.record_id(record)] = record["predictions"]

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


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
        self._log = ResumableLog(self.partial_path, lambda r: int(r["image_id"]), key=key,
                                 resume=resume, fsync=fsync)
        self._fh = self._log.fh  # the open partial file

    @property
    def done_ids(self) -> set[int]:
        """Datapoint ids already recorded (including ones with zero predictions)."""
        return set(self._log.records)

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._log.records

    def __len__(self) -> int:
        return len(self._log.records)

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
        self._log.append({"image_id": iid, "predictions": preds})

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predictions(self) -> list[dict]:
        """All recorded predictions, datapoints in first-written order."""
        return [p for preds in self._log.records.values() for p in preds]

    def finalize(self, remove_partial: bool = False) -> str:
        """Atomically write the COCO results list to ``path`` and return it.

        The partial file is kept unless ``remove_partial`` (a later run with
        ``resume=True`` then finds every datapoint done).
        """
        self.close()

        def dump(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.predictions(), f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())

        atomic_write(self.path, dump)
        if remove_partial and os.path.exists(self.partial_path):
            os.remove(self.partial_path)
        return self.path


class PairWriter:
    """Resumable per-pair store of video predictions: ``<path>.partial.jsonl`` holds a header
    line (``key``) and one line per finished (video, phrase) pair; :meth:`finalize` writes the
    flat YTVIS results list of the requested pairs to ``path`` atomically."""

    def __init__(self, path: str | os.PathLike, key: Mapping[str, Any]):
        self.path = Path(path)
        self._log = ResumableLog(f"{self.path}.partial.jsonl",
                                 lambda r: (int(r["video_id"]), int(r["category_id"])), key=key)

    @property
    def records(self) -> dict[PairKey, list[dict]]:
        """Pair -> its YTVIS entries, for the pairs finished so far."""
        return self._log.records  # type: ignore[return-value]

    def __contains__(self, key: PairKey) -> bool:
        return key in self._log.records

    def write(self, video_id: int, category_id: int, predictions: list[dict]) -> None:
        self._log.append({"video_id": video_id, "category_id": category_id, "predictions": predictions})

    def close(self) -> None:
        self._log.close()

    def finalize(self, pairs: Iterable[PairKey]) -> list[dict]:
        preds = [p for k in pairs for p in self._log.records.get(k, [])]
        atomic_write(self.path, lambda t: Path(t).write_text(json.dumps(preds)))
        return preds
