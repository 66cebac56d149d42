"""Micro-batching of embeddings across threads (``gallery.service.batching``), over the real embedder."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gallery.service.batching import BatcherClosed, BatchingEmbedder
from gallery.vision.embedding import Embedder
from gallery.vision.pipeline import FacePipeline

DATA = Path(__file__).resolve().parent.parent / "data"
# Batch composition changes torch's summation order: descriptors agree to float32 rounding
# (measured up to 2.4e-7), while two different faces lie ~0.5 apart.
ROUNDING = 1e-5


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(flip=True)


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Real aligned chips of 12 different faces."""
    pipeline = FacePipeline()
    found = [
        face.chip
        for photo in ("group_of_six.jpg", "four_people.jpg", "two_people.jpg", "obama.jpg", "biden.jpg")
        for face in pipeline.faces(DATA / photo)
    ]
    assert len(found) == 12
    return np.stack(found)


def at_once(calls: list[Callable[[], np.ndarray]]) -> list[np.ndarray | BaseException]:
    """Run ``calls`` in threads released together; each one's result or exception, in order."""
    results: list[np.ndarray | BaseException] = [RuntimeError("did not run")] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_callers_each_get_their_own_descriptors_from_one_shared_batch(embedder, chips) -> None:
    sizes: list[int] = []
    parts = [chips[0:1], chips[1:4], chips[4:6], chips[6:12]]
    # The batch runs as soon as it holds every chip; the long wait only keeps a slow thread in it.
    with BatchingEmbedder(embedder, max_batch=len(chips), max_wait=1.0, on_batch=sizes.append) as batcher:
        results = at_once([lambda part=part: batcher.embed(part) for part in parts])
    assert sizes == [len(chips)]
    for part, got in zip(parts, results, strict=True):
        assert isinstance(got, np.ndarray) and got.shape == (len(part), 128)
        np.testing.assert_allclose(got, embedder.embed(part), atol=ROUNDING)


def test_a_batch_never_holds_more_than_max_batch_chips_unless_one_request_does(embedder, chips) -> None:
    sizes: list[int] = []
    parts = [chips[i : i + 2] for i in range(0, 8, 2)] + [chips[8:12]]
    with BatchingEmbedder(embedder, max_batch=4, max_wait=0.05, on_batch=sizes.append) as batcher:
        results = at_once([lambda part=part: batcher.embed(part) for part in parts])
        alone = batcher.embed(chips[:6])  # larger than max_batch: a batch of its own
    assert sum(sizes) == 12 + 6 and sizes[-1] == 6
    assert all(size <= 4 for size in sizes[:-1])
    for part, got in zip(parts, results, strict=True):
        np.testing.assert_allclose(got, embedder.embed(part), atol=ROUNDING)
    np.testing.assert_allclose(alone, embedder.embed(chips[:6]), atol=ROUNDING)


def test_a_lone_caller_waits_no_longer_than_max_wait_for_company(embedder, chips) -> None:
    sizes: list[int] = []
    with BatchingEmbedder(embedder, max_batch=16, max_wait=0.002, on_batch=sizes.append) as batcher:
        first = batcher.embed(chips[:1])
        second = batcher.embed(chips[1:2])
    assert sizes == [1, 1]
    np.testing.assert_allclose(np.concatenate([first, second]), embedder.embed(chips[:2]), atol=ROUNDING)


def test_an_error_reaches_the_callers_of_its_batch_and_no_other(embedder, chips) -> None:
    # Chips the network cannot take (100x100, not 150x150): the real embedder raises ValueError.
    wrong = np.zeros((2, 100, 100, 3), np.uint8)
    with BatchingEmbedder(embedder, max_batch=16, max_wait=0.5) as batcher:
        results = at_once(
            [
                lambda: batcher.embed(chips[:3]),
                lambda: batcher.embed(wrong),
                lambda: batcher.embed(wrong[:1]),
                lambda: batcher.embed(chips[3:5]),
            ]
        )
        after = batcher.embed(chips[5:6])  # the worker carries on after a failed batch
    assert isinstance(results[1], ValueError) and "150, 150, 3" in str(results[1])
    assert isinstance(results[2], ValueError)
    np.testing.assert_allclose(results[0], embedder.embed(chips[:3]), atol=ROUNDING)
    np.testing.assert_allclose(results[3], embedder.embed(chips[3:5]), atol=ROUNDING)
    np.testing.assert_allclose(after, embedder.embed(chips[5:6]), atol=ROUNDING)


def test_close_embeds_what_is_queued_then_refuses_new_calls(embedder, chips) -> None:
    batcher = BatchingEmbedder(embedder, max_batch=16, max_wait=1.0)
    answers: list[np.ndarray] = []
    waiting = threading.Thread(target=lambda: answers.append(batcher.embed(chips[:2])))
    waiting.start()
    while batcher.queued_chips < 2:
        time.sleep(0.001)
    started = time.monotonic()
    batcher.close(timeout=30)
    waiting.join(30)
    # Closing does not wait out the 1 s: the queued request runs at once and is answered.
    assert time.monotonic() - started < 0.9
    np.testing.assert_allclose(answers[0], embedder.embed(chips[:2]), atol=ROUNDING)
    with pytest.raises(BatcherClosed):
        batcher.embed(chips[:1])
    assert batcher.queued_chips == 0


def test_no_chips_need_no_batch(embedder) -> None:
    sizes: list[int] = []
    with BatchingEmbedder(embedder, on_batch=sizes.append) as batcher:
        assert batcher.embed(np.empty((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    assert sizes == []


def test_settings_out_of_range_are_refused(embedder) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchingEmbedder(embedder, max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        BatchingEmbedder(embedder, max_wait=-1)


def test_a_pipeline_embeds_through_the_wrapper_it_is_given_and_keeps_the_networks_model_id() -> None:
    # What `gallery serve` builds: FacePipeline(wrap_embedder=...) around a BatchingEmbedder.
    sizes: list[int] = []
    made: list[BatchingEmbedder] = []

    def batching(network: Embedder) -> BatchingEmbedder:
        made.append(BatchingEmbedder(network, on_batch=sizes.append))
        return made[0]

    batched, plain = FacePipeline(wrap_embedder=batching), FacePipeline()
    with made[0]:
        found = batched.faces(DATA / "two_people.jpg")
    expected = plain.faces(DATA / "two_people.jpg")
    assert batched.model_id == plain.model_id == "dlib_resnet_v1+flip"
    assert sizes == [2]  # both faces of the photo, in one pass through the batcher
    assert [face.box for face in found] == [face.box for face in expected]
    np.testing.assert_allclose([f.embedding for f in found], [f.embedding for f in expected], atol=ROUNDING)
