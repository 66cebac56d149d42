"""Milliseconds per chip of Embedder.embed at batch 1 and 32, and with two threads sharing it.

    python -m benchmarks.bench_embedding [--runs 7] [--threads 2]

Uses torch.set_num_threads(2) (the 2-core target machine) and random chips: the network's
cost does not depend on pixel values. The two-thread figures compare concurrent forwards
(what Embedder does) with forwards serialised by a lock, the alternative design.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import gallery  # noqa: F401 - first, so torch and FAISS load with the OpenMP wait policy gallery sets

# isort: split
import numpy as np
import torch

from gallery.vision.embedding import Embedder, recognition_network


def _median_ms_per_chip(embedder: Embedder, chips: np.ndarray, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        embedder.embed(chips)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(chips)


def _two_threads_ms_per_chip(embedder: Embedder, chips: np.ndarray, runs: int, serialised: bool) -> float:
    """Two threads each embedding ``chips`` at once: wall time per chip of the pair."""
    lock = threading.Lock()

    def embed() -> None:
        if serialised:
            with lock:
                embedder.embed(chips)
        else:
            embedder.embed(chips)

    times = []
    for _ in range(runs):
        threads = [threading.Thread(target=embed) for _ in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / (2 * len(chips))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognition_network()  # load (and convert once) outside the timings
    chips = np.random.default_rng(0).integers(0, 256, size=(32, 150, 150, 3), dtype=np.uint8)
    embedder = Embedder(batch_size=32)
    embedder.embed(chips[:2])  # warm-up
    print(f"batch 1:  {_median_ms_per_chip(embedder, chips[:1], args.runs * 3):.2f} ms/chip")
    print(f"batch 32: {_median_ms_per_chip(embedder, chips, args.runs):.2f} ms/chip")
    for batch in (1, 8):
        runs = args.runs * (3 if batch == 1 else 1)
        concurrent = _two_threads_ms_per_chip(embedder, chips[:batch], runs, serialised=False)
        serialised = _two_threads_ms_per_chip(embedder, chips[:batch], runs, serialised=True)
        print(f"2 callers x batch {batch}: concurrent {concurrent:.2f}, serialised {serialised:.2f} ms/chip")


if __name__ == "__main__":
    main()
