"""Embedding throughput with and without micro-batching, at 1, 4 and 8 concurrent callers.

    python -m benchmarks.bench_batching [--seconds 8] [--callers 1 4 8] [--max-wait-ms 4] [--max-batch 16]

Each caller is a thread that embeds one chip per call (one face per identify request, the
common case at a door) as fast as it can for ``--seconds``. "direct": the callers share one
``Embedder`` (concurrent forwards, what the service would do without batching); "batched":
they share a ``BatchingEmbedder`` around it. Reports calls/s, the latency p50 and p99 per
call, and the mean batch size. The embedder is the service's (flip on), with torch on every
core this process may use; chips are random (the network's cost does not depend on pixels).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np

import gallery  # noqa: F401 - first, so torch loads with the OpenMP wait policy gallery sets
from gallery.runtime import set_threads
from gallery.service.batching import BatchingEmbedder
from gallery.vision.embedding import Embedder
from gallery.vision.pipeline import ChipEmbedder


def load(embedder: ChipEmbedder, callers: int, seconds: float) -> tuple[float, float, float]:
    """Calls/s, p50 and p99 latency (ms) of ``callers`` threads each embedding one chip per call."""
    chip = np.random.default_rng(0).integers(0, 256, (1, 150, 150, 3), dtype=np.uint8)
    latencies: list[float] = []
    lock = threading.Lock()
    start_together = threading.Barrier(callers)
    stop_at = [0.0]

    def caller() -> None:
        start_together.wait()
        mine = []
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            embedder.embed(chip)
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return len(latencies) / elapsed, 1000 * cuts[49], 1000 * cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-wait-ms", type=float, default=4.0)
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    set_threads(len(os.sched_getaffinity(0)))
    embedder = Embedder(flip=True)
    embedder.embed(np.zeros((2, 150, 150, 3), np.uint8))  # load the network before timing
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; max wait {args.max_wait_ms} ms, "
        f"max batch {args.max_batch}, {args.seconds:g} s per row"
    )
    print("| callers | mode | calls/s | p50 ms | p99 ms | mean batch |\n|---|---|---|---|---|---|")
    for callers in args.callers:
        rate, p50, p99 = load(embedder, callers, args.seconds)
        print(f"| {callers} | direct | {rate:.1f} | {p50:.0f} | {p99:.0f} | 1 |")
        sizes: list[int] = []
        with BatchingEmbedder(
            embedder, max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, on_batch=sizes.append
        ) as batcher:
            rate, p50, p99 = load(batcher, callers, args.seconds)
        print(f"| {callers} | batched | {rate:.1f} | {p50:.0f} | {p99:.0f} | {statistics.mean(sizes):.1f} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
