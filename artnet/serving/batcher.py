"""Request batching: concurrent demo requests share forward passes, and each still gets its own answer or error.

The demo serves up to CONCURRENCY requests at once (one gradio budget for every event that runs the model); a
forward pass over eight images costs little more than over one, so `Batcher` gathers the waiting requests into
passes instead of running one pass each. How many passes may run side by side is `artnet.serving.threads`'s
`forward_lanes`. Pure threading: nothing here knows about models or gradio.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

# One budget for every event that runs the model (classify, explain, examples): concurrency is per event in
# gradio, so two classify plus two explain requests used to decode four worst-case images at once (8.1 GB).
# Up to CONCURRENCY requests are in flight; their forward passes are batched (`Batcher`), and at most
# DECODE_SLOTS (`artnet.serving.backend`) of them decode an upload at once, which is what bounds memory.
CONCURRENCY = 8
MAX_BATCH = 8


class Batcher:
    """Concurrent requests share forward passes: a request whose input no pass has taken leads one over every
    request waiting (up to `max_batch`, oldest first) when fewer than `lanes` passes are running, and hands over
    once its own result is in; the others wait. Unlike gradio's `batch=True`, each request keeps its own errors:
    one bad upload never fails the requests batched with it (it is refused before it gets here)."""

    def __init__(self, run, max_batch: int = MAX_BATCH, lanes: int = 1):
        self._run = run  # list of model-size uint8 arrays -> list of results
        self._max_batch = max_batch
        self._lanes = max(1, int(lanes))
        self._turn = threading.Condition()
        self._pending: list[tuple[np.ndarray, Future]] = []
        self._running = 0  # passes under way
        self.batch_sizes: list[int] = []  # for tests and the benchmark

    def __call__(self, pixels: np.ndarray):
        future: Future = Future()
        with self._turn:
            self._pending.append((pixels, future))
        while True:
            with self._turn:
                # A taken input is `running` until its pass sets the result; only an untaken one may lead.
                while not future.done() and (future.running() or self._running >= self._lanes):
                    self._turn.wait()
                if future.done():
                    return future.result()
                self._running += 1
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                for _, taken in batch:
                    taken.set_running_or_notify_cancel()
            try:
                self._pass(batch)
            finally:
                with self._turn:
                    self._running -= 1
                    self._turn.notify_all()

    def _pass(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            results = self._run([pixels for pixels, _ in batch])
        except Exception as error:  # noqa: BLE001  (handed to each request of the batch, raised there)
            for _, future in batch:
                future.set_exception(error)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
