"""The embed batcher: concurrent callers get their own rows back, and faces queued while a batch runs
go through the embedder together."""

from __future__ import annotations

import threading
import time

import numpy as np

from facegallery.faces import Face
from facegallery.service.batching import EmbedBatcher


def test_concurrent_calls_are_batched_and_answered_in_order():
    release, calls = threading.Event(), []

    def embed(faces):
        calls.append(len(faces))
        if len(calls) == 1:
            release.wait(10)
        return np.array([[f.detection_score] for f in faces], np.float32)  # each face's number

    batcher = EmbedBatcher(embed, max_batch=64)
    results = {}

    def ask(i, n):
        faces = [Face(np.zeros((4, 4, 3), np.uint8), [0, 0, 4, 4], detection_score=100 * i + j) for j in range(n)]
        results[i] = batcher.embed(faces)

    first = threading.Thread(target=ask, args=(0, 1))
    first.start()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:  # a caller that failed must not hang the suite
        time.sleep(0.01)
    assert calls
    rest = [threading.Thread(target=ask, args=(i, i)) for i in range(1, 6)]
    for t in rest:
        t.start()
    while batcher._queue.qsize() < 5:  # all five waiting while the first batch runs
        time.sleep(0.01)
    release.set()
    for t in [first, *rest]:
        t.join(10)
    batcher.close()
    assert calls == [1, 1 + 2 + 3 + 4 + 5]
    for i, got in results.items():
        assert got[:, 0].tolist() == [100 * i + j for j in range(max(i, 1))]


def test_an_embedder_error_reaches_the_caller_and_the_batcher_lives_on():
    def embed(faces):
        if faces[0].detection_score == -1:
            raise ValueError("broken")
        return np.ones((len(faces), 2), np.float32)

    batcher = EmbedBatcher(embed)
    face = Face(np.zeros((4, 4, 3), np.uint8), [0, 0, 4, 4])
    try:
        batcher.embed([Face(face.crop, face.box, detection_score=-1)])
    except ValueError as e:
        assert "broken" in str(e)
    else:
        raise AssertionError("the error was swallowed")
    assert batcher.embed([face]).shape == (1, 2)
    batcher.close()
