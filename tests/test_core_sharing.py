"""Concurrent forward passes share the thread budget instead of each taking every core.

Thread counts are read inside the passes (torch.get_num_threads() is the calling thread's
OpenMP setting), so these tests see what each pass really runs with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from gallery.vision.detector import FaceDetector
from gallery.vision.embedding import Embedder, recognition_network
from gallery.vision.image import load_rgb
from gallery.vision.threads import set_torch_threads, sharing_cores, torch_thread_budget


@pytest.fixture
def budget_of_two() -> Iterator[None]:
    before = torch_thread_budget()  # not torch.get_num_threads(): a shared pass may have lowered it
    set_torch_threads(2)
    yield
    set_torch_threads(before)


def test_a_lone_pass_gets_the_whole_budget(budget_of_two: None) -> None:
    with sharing_cores():
        assert torch.get_num_threads() == 2


def test_overlapping_passes_split_the_budget_and_each_keeps_its_own_share(budget_of_two: None) -> None:
    first_inside, second_done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        with sharing_cores():
            seen["first at start"] = torch.get_num_threads()
            first_inside.set()
            second_done.wait(30)
            seen["first after the second"] = torch.get_num_threads()  # not lowered under its feet

    def second() -> None:
        first_inside.wait(30)
        with sharing_cores():
            seen["second"] = torch.get_num_threads()
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert seen == {"first at start": 2, "second": 1, "first after the second": 2}
    with sharing_cores():  # both gone: the whole budget again
        assert torch.get_num_threads() == 2


def test_the_budget_never_goes_below_one_thread() -> None:
    before = torch_thread_budget()
    set_torch_threads(1)
    try:
        with sharing_cores(), sharing_cores():
            assert torch.get_num_threads() == 1
    finally:
        set_torch_threads(before)


def _threads_seen_by(module: torch.nn.Module, run: Callable[[], object]) -> list[int]:
    """torch.get_num_threads() at each forward pass of ``module`` while ``run()`` runs."""
    counts: list[int] = []
    handle = module.register_forward_pre_hook(lambda *_: counts.append(torch.get_num_threads()))
    try:
        run()
    finally:
        handle.remove()
    return counts


def _while_another_pass_runs(action: Callable[[], object]) -> None:
    """Run ``action()`` while another thread is inside a pass."""
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        with sharing_cores():
            inside.set()
            done.wait(60)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(30)
        action()
    finally:
        done.set()
        thread.join(60)


def test_the_detector_and_the_embedder_take_their_share(budget_of_two: None, photo) -> None:
    detector, embedder = FaceDetector(), Embedder()
    detector_network, _ = detector._model()
    recogniser = recognition_network()
    image = load_rgb(photo("obama.jpg"))
    chips = np.zeros((1, 150, 150, 3), np.uint8)

    def detect() -> list[int]:
        return _threads_seen_by(detector_network, lambda: detector.detect(image))

    def embed() -> list[int]:
        return _threads_seen_by(recogniser, lambda: embedder.embed(chips))

    assert (detect(), embed()) == ([2], [2])
    shared: list[list[int]] = []
    _while_another_pass_runs(lambda: shared.append(detect()))
    _while_another_pass_runs(lambda: shared.append(embed()))
    assert shared == [[1], [1]]
