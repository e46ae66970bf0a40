"""The one model holder of a server: the model, one bounded inference queue and a single
worker thread, so the model runs one job at a time.

- :meth:`Service.run` puts a job on the queue and waits for it up to the per-request timeout
  (a ServeError 504; a job still waiting then is cancelled and never runs). A full queue
  raises a ServeError (429 with a Retry-After estimated from recent job times).
- Text prompts on the same cached image (same exemplars and threshold) waiting in the queue
  are merged into one ``predict`` call: one fusion/decoder batch for all their phrases.
- Propagation steps of a running stream skip the depth check (``force``): an accepted stream
  is never cut by other clients' load; other jobs interleave between its frames.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ServeError
from ..inference.image import ImagePredictor
from ..inference.results import Prediction
from .sessions import ImageEntry


@dataclass
class Job:
    """One unit of model work."""

    fn: Callable[[], object] | None  # run on the worker; None for a batched segment job
    future: Future = field(default_factory=Future)  # resolved by the worker
    entry: ImageEntry | None = None  # batched segment: the cached image
    texts: list = field(default_factory=list)  # batched segment: its phrases
    key: tuple | None = None  # batched segment: (image id, exemplars, threshold)
    exemplars: tuple = ()  # batched segment: ((x0, y0, x1, y1), positive) pixel boxes
    threshold: float = 0.5  # batched segment
    max_instances: int | None = None  # batched segment


class InferenceQueue:
    """A bounded FIFO of :class:`Job` served by one daemon thread."""

    def __init__(self, depth: int):
        self.depth_limit = depth
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._mean_s = 0.05  # moving average of job seconds (for Retry-After)
        self.batched = 0  # phrases that rode along in another request's predict call
        self._thread = threading.Thread(target=self._loop, name="conceptseg-inference",
                                        daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._jobs)

    def submit(self, job: Job, force: bool = False) -> Future:
        with self._cond:
            if self._stopped:
                raise ServeError("the server is shutting down", 503, "shutting_down", 5)
            if not force and len(self._jobs) >= self.depth_limit:
                wait = max(1, math.ceil((len(self._jobs) + 1) * self._mean_s))
                raise ServeError(f"the inference queue is full ({len(self._jobs)} jobs waiting, "
                                 "--queue-depth): retry later", 429, "queue_full", wait)
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            pending = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for job in pending:
            job.future.cancel()
        self._thread.join(timeout=10)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            first = self._jobs.popleft()
            group = [first]
            if first.key is not None:  # every waiting job on the same image and settings
                same = [j for j in self._jobs if j.key == first.key]
                for j in same:
                    self._jobs.remove(j)
                group += same
            return group

    def _loop(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            group = [j for j in group if j.future.set_running_or_notify_cancel()]
            if not group:
                continue
            start = time.monotonic()
            try:
                with torch.inference_mode():
                    if group[0].key is None:
                        group[0].future.set_result(group[0].fn())
                    else:
                        self._segment(group)
            except BaseException as e:  # handed to the waiting request, never kills the worker
                for j in group:
                    if not j.future.done():
                        j.future.set_exception(e)
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - start)

    def _segment(self, group: list[Job]) -> None:
        """One predict call for the phrases of every job in ``group`` (same image, exemplars,
        threshold); each job gets its own phrases' predictions, in its order."""
        first = group[0]
        texts = list(dict.fromkeys(t for j in group for t in j.texts))
        limits = [j.max_instances for j in group]
        cap = None if any(m is None for m in limits) else max(limits)
        preds = first.entry.predictor.predict(text=texts, exemplars=first.exemplars,
                                              threshold=first.threshold, max_instances=cap)
        by_text = dict(zip(texts, preds))
        self.batched += len(group) - 1
        for j in group:
            j.future.set_result([by_text[t] for t in j.texts])


class Service:
    """The model, its queue, and how requests reach them."""

    def __init__(self, model, *, timeout: float, queue_depth: int, precision: str = "fp32",
                 device: torch.device | None = None):
        self.model = model  # a VideoModel (detector + tracker) or a Sam3Detector
        self.detector = model.detector if hasattr(model, "detector") else model
        self.has_tracker = hasattr(model, "tracker")
        self.precision = precision
        self.device = device or next(self.detector.parameters()).device
        self.timeout = timeout
        self.queue = InferenceQueue(queue_depth)
        self._tokenizer = None  # built by the first image predictor, shared by the rest

    async def run(self, fn: Callable[[], object], force: bool = False):
        """Run ``fn`` on the worker: its result or its exception, or a ServeError (429 queue
        full, 504 timeout)."""
        return await self.wait(self.queue.submit(Job(fn), force=force))

    async def wait(self, future: Future):
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise ServeError(f"inference did not finish within {self.timeout:g} s (--timeout); "
                             "the server is busy or the request is too large", 504,
                             "timeout") from None

    def new_predictor(self, rgb) -> ImagePredictor:
        """An image predictor on the shared model holding ``rgb``'s encoding (worker only)."""
        p = ImagePredictor(self.model, precision=self.precision, tokenizer=self._tokenizer)
        self._tokenizer = p.tokenizer
        return p.set_image(rgb)

    async def segment(self, entry: ImageEntry, texts: list, exemplars, threshold: float,
                      max_instances: int | None) -> list[Prediction]:
        """Predictions for ``texts`` on a cached image; phrases of concurrent requests on the
        same image are batched. ``texts == [None]``: exemplars only (not batched)."""
        ex = tuple((tuple(b), bool(p)) for b, p in exemplars)
        if texts == [None]:
            return await self.run(lambda: [entry.predictor.predict(
                text=None, exemplars=ex, threshold=threshold, max_instances=max_instances)])
        job = Job(None, entry=entry, texts=list(texts), key=(entry.image_id, ex, threshold),
                  exemplars=ex, threshold=threshold, max_instances=max_instances)
        return await self.wait(self.queue.submit(job))

    def close(self) -> None:
        self.queue.stop()
