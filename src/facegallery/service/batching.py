"""Faces from concurrent requests embedded together: one thread owns the embedder and, each time it is
free, takes every face waiting (up to ``max_batch``) into one forward pass. Nothing waits on a timer: a
lone request is embedded at once, and under load the queue that builds up while a batch runs becomes
the next batch (benchmarks/bench_service.py measures what it buys)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from facegallery.faces import Face


class EmbedBatcher:
    """``embed(faces)`` from any thread; the embedding runs on the batcher's own thread."""

    def __init__(self, embed: Callable[[list[Face]], np.ndarray], max_batch: int = 64):
        self._embed, self.max_batch = embed, max_batch
        self._queue: queue.Queue[tuple[list[Face], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="facegallery-embed", daemon=True)
        self._thread.start()
        self.batches = 0  # forward passes made, and faces embedded (for the benchmark's report)
        self.faces = 0

    def embed(self, faces: Sequence[Face]) -> np.ndarray:
        fut: Future = Future()
        self._queue.put((list(faces), fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            work = [first]
            size = len(first[0])
            while size < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                work.append(nxt)
                size += len(nxt[0])
            try:
                emb = self._embed([f for faces, _ in work for f in faces])
            except BaseException as e:  # each waiting request gets the error, the thread lives on
                for _, fut in work:
                    fut.set_exception(e)
                continue
            self.batches += 1
            self.faces += size
            start = 0
            for faces, fut in work:
                fut.set_result(emb[start : start + len(faces)])
                start += len(faces)
