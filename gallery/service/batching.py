"""Micro-batching: face chips from concurrent requests are embedded together, in one forward pass.

The embedding network costs ~36 ms per chip at batch 1 and ~13 ms per chip at batch 8 on two
cores (flip on; ``benchmarks/bench_batching.py``): most of a forward pass is fixed overhead
that a batch shares. A service handling requests in threads wraps its pipeline's embedder in a
``BatchingEmbedder``: each thread's ``embed`` call queues its chips, and one worker thread
runs whatever has queued as a single batch, so under load the batches grow and throughput
rises, while a lone request waits at most ``max_wait`` for company.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gallery.vision.pipeline import ChipEmbedder

# A lone request waits this long for others to share its batch: a few ms against the ~36 ms
# its own forward pass costs, and the most batching can add to any request's latency.
DEFAULT_MAX_WAIT_S = 0.004
# Chips per batch: past ~16 the cost per chip stops falling (10.7 ms at 16 against 12.9 at 8),
# and a bigger batch only makes the requests that share it wait for each other.
DEFAULT_MAX_BATCH = 16


class BatcherClosed(RuntimeError):
    """``embed`` was called on a ``BatchingEmbedder`` after ``close()`` (the service is shutting down)."""


@dataclass(eq=False)
class _Request:
    chips: np.ndarray
    arrived: float
    answer: Future[np.ndarray] = field(default_factory=Future)


class BatchingEmbedder:
    """A ``ChipEmbedder`` that merges the ``embed`` calls of concurrent threads into shared batches.

    Each call blocks until its own rows are embedded and returns exactly them (the batch is
    split back by request). A batch is sent to the wrapped embedder when it holds
    ``max_batch`` chips or when its oldest request has waited ``max_wait`` seconds; requests
    that arrive while a batch runs form the next one, without further wait once that deadline
    has passed. A request of more than ``max_batch`` chips is a batch of its own. An exception
    of the wrapped embedder is raised in every caller of that batch, and in no other.
    Chips of another shape or type than the batch's own wait for the next batch, so a
    malformed request fails alone.

    Results equal the wrapped embedder's on the same chips up to float32 rounding (~2e-7):
    torch's CPU convolutions sum in a different order at another batch size.

    Args:
        embedder: the embedder to call (the pipeline's ``embedder``).
        max_batch: most chips per batch.
        max_wait: seconds the oldest queued request waits for more before its batch runs.
        on_batch: called with the number of chips of each batch before it runs (e.g. a
            Prometheus histogram's ``observe``), from the worker thread; it must not raise.
    """

    def __init__(
        self,
        embedder: ChipEmbedder,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT_S,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if not 0 <= max_wait <= 1:
            raise ValueError(f"max_wait must be between 0 and 1 second, got {max_wait}")
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._queued_chips = 0
        self._closed = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._serve, name="embedding-batcher", daemon=True)
        self._worker.start()

    @property
    def queued_chips(self) -> int:
        """Chips waiting for a batch now (a queue-depth gauge)."""
        return self._queued_chips

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors of ``chips``, embedded in a batch shared with concurrent callers.

        Raises:
            BatcherClosed: ``close()`` was called. Whatever the wrapped embedder raises for
                the batch these chips were in.
        """
        chips = np.asarray(chips)
        if not len(chips):
            return self.embedder.embed(chips)  # nothing to share a batch with
        request = _Request(chips, time.monotonic())
        with self._changed:
            if self._closed:
                raise BatcherClosed("the embedding batcher is closed")
            self._queue.append(request)
            self._queued_chips += len(chips)
            self._changed.notify_all()
        return request.answer.result()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new calls, embed those already queued, and stop the worker (waiting ``timeout`` s at most)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._worker.join(timeout)

    def __enter__(self) -> BatchingEmbedder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            with self._changed:
                batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a batch to be due (holding the lock); None once closed and drained."""
        while not self._queue:
            if self._closed:
                return None
            self._changed.wait()
        deadline = self._queue[0].arrived + self.max_wait
        while not self._closed and self._queued_chips < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.wait(left)
        first = self._queue.popleft()
        batch, size = [first], len(first.chips)
        kind = (first.chips.shape[1:], first.chips.dtype)
        kept: list[_Request] = []
        while self._queue and size < self.max_batch:
            request = self._queue.popleft()
            fits = size + len(request.chips) <= self.max_batch
            if fits and (request.chips.shape[1:], request.chips.dtype) == kind:
                batch.append(request)
                size += len(request.chips)
            else:
                kept.append(request)
        self._queue.extendleft(reversed(kept))  # skipped requests keep their place at the front
        self._queued_chips -= size
        return batch

    def _run(self, batch: list[_Request]) -> None:
        sizes = [len(request.chips) for request in batch]
        try:
            if self._on_batch is not None:
                self._on_batch(sum(sizes))
            chips = batch[0].chips if len(batch) == 1 else np.concatenate([r.chips for r in batch])
            descriptors = self.embedder.embed(chips)
            if len(descriptors) != len(chips):
                raise RuntimeError(f"the embedder returned {len(descriptors)} descriptors for {len(chips)} chips")
        except BaseException as err:  # the callers of this batch re-raise it; the worker carries on
            for request in batch:
                request.answer.set_exception(err)
            return
        start = 0
        for request, size in zip(batch, sizes, strict=True):
            request.answer.set_result(descriptors[start : start + size].copy())
            start += size
