"""How many CPU threads the torch networks use, and how concurrent forward passes share them.

torch's CPU convolutions split one forward pass across OpenMP threads, but on two cores the
detector's pass runs only ~1.35x faster on two threads than on one. When several threads of a
program (a service's workers, an application's cameras) run passes at once, each pass on every
core makes the threads fight over the cores; one core per pass does more work per second. So
every pass asks ``sharing_cores`` for its share: the whole budget when it runs alone, an equal
part of it when others run too. OpenMP's thread count is a per-thread setting, so each caller's
share holds for its own passes only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class _CoreBudget:
    def __init__(self) -> None:
        self.count = torch.get_num_threads()  # torch's default: one per core
        self.running = 0
        self.lock = threading.Lock()


_budget = _CoreBudget()


def set_torch_threads(count: int) -> None:
    """Use up to ``count`` threads for torch's intra-op parallelism (torch's default is one per core)."""
    with _budget.lock:
        _budget.count = count
    torch.set_num_threads(count)


def torch_thread_budget() -> int:
    """The threads a lone forward pass gets (``set_torch_threads``'s count)."""
    return _budget.count


@contextmanager
def sharing_cores() -> Iterator[None]:
    """Run the torch work inside on this thread's share of the thread budget: all of it alone, 1/n among n."""
    with _budget.lock:
        _budget.running += 1
        share = max(1, _budget.count // _budget.running)
    # torch.set_num_threads sets the calling thread's OpenMP count (and the default of threads
    # not yet started); a pass already running elsewhere keeps the count it started with.
    torch.set_num_threads(share)
    try:
        yield
    finally:
        with _budget.lock:
            _budget.running -= 1
