"""The HTTP service against the library in one process: identify latency and throughput, and the server's memory.

    python -m benchmarks.bench_service [--size 100000] [--requests 48] [--clients 1,4,8,16] [--rounds 3]
        [--threads N] [--workers N] [--embed-wait-ms MS] [--baseline-threads 2] [--work /tmp/gallery-bench]

A gallery of ``--size`` synthetic people (``bench_identify.build_home``, made once under
``--work`` and reused) is identified against with a 640x480 photo holding one face (the real
models), ``--requests`` times per row: in this process, one after another, with no HTTP
(``Gallery.identify``, ``--baseline-threads`` torch threads: the CLI's default is one per
core), and through ``gallery serve`` (a separate process, uvicorn, an unbounded rate, and
serve's defaults unless ``--threads``, ``--workers`` or ``--embed-wait-ms`` say otherwise) by
1, 4, 8 and 16 concurrent clients. The rows run in ``--rounds`` rounds, each round every row
once, so that every row meets the same mix of load from other programs on a shared machine;
each row prints the median over the rounds and the range. Also printed: the mean embedding
batch the service ran at each level, and the serving process's resident memory after warm-up
and at the end (VmRSS and peak VmHWM).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

# gallery before anything that loads torch (bench_pipeline does): it sets the OpenMP wait policy,
# which torch's runtime reads when it loads. Loaded first, torch's threads spin while they wait,
# and on a busy machine the in-process loop measured 1.5-3x slower than `gallery serve`'s.
from gallery import Gallery
from gallery.runtime import set_threads

# isort: split
from benchmarks.bench_identify import build_home, refresh_home
from benchmarks.bench_pipeline import photo_640x480
from benchmarks.serving import gallery_service

ROOT = Path(__file__).resolve().parent.parent


def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_640x480()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def summary(latencies: list[float], wall_s: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "requests_per_s": len(ordered) / wall_s,
    }


def in_process(gallery: Gallery, photo: bytes, requests: int) -> dict[str, float]:
    latencies = []
    start = time.perf_counter()
    for _ in range(requests):
        began = time.perf_counter()
        faces = gallery.identify(photo)
        latencies.append(time.perf_counter() - began)
        assert len(faces) == 1
    return summary(latencies, time.perf_counter() - start)


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def batch_sizes(metrics: str) -> tuple[float, float]:
    """(passes, chips) the service's embedder ran so far, from its /metrics text."""
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("gallery_embed_batch_size_"))
    return float(values.get("gallery_embed_batch_size_count", 0)), float(values.get("gallery_embed_batch_size_sum", 0))


@contextlib.contextmanager
def serving(home: Path, options: list[str]) -> Iterator[tuple[httpx.Client, int]]:
    """``gallery serve`` on ``home`` with ``options``, ready and warm: a client with an identify key, and its pid."""
    with Gallery(home) as gallery:
        key = gallery.hosting.create_key(f"bench-{time.time_ns()}", ["identify"]).secret
    arguments = ["--home", str(home), *options, "--rate-limit", "1000000/minute", "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with gallery_service(sys.executable, arguments, env) as (url, pid):
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            yield client, pid


def through_http(client: httpx.Client, photo: bytes, requests: int, clients: int) -> dict[str, float]:
    """``requests`` identifies by ``clients`` concurrent clients."""

    def one(_: int) -> float:
        began = time.perf_counter()
        client.post("/v1/identify", content=photo).raise_for_status()
        return time.perf_counter() - began

    passes, chips = batch_sizes(client.get("/metrics").text)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    row = summary(latencies, time.perf_counter() - start)
    passes_after, chips_after = batch_sizes(client.get("/metrics").text)
    return row | {"mean_batch": (chips_after - chips) / max(1.0, passes_after - passes)}


def spread(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each measure's median over the rounds, with its min and max."""
    row = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    for name in ("p50_ms", "p99_ms", "requests_per_s"):
        row[f"{name}_min"], row[f"{name}_max"] = min(r[name] for r in runs), max(r[name] for r in runs)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="the service's torch threads (gallery --threads; default: serve's)")
    parser.add_argument("--workers", type=int, help="the service's workers (default: serve's)")
    parser.add_argument("--embed-wait-ms", type=float, help="the service's batch wait (default: serve's)")
    parser.add_argument("--baseline-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gallery-bench"))
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    home = args.work / f"home-{args.size}"
    if not (home / "complete").exists():
        print(f"building a gallery of {args.size:,} synthetic people in {home} ...", flush=True)
        build_home(home, args.size)
    else:
        refresh_home(home, args.size)
    photo = photo_jpeg()
    options = [] if args.threads is None else ["--threads", str(args.threads)]
    options.append("serve")
    options += [] if args.workers is None else ["--workers", str(args.workers)]
    options += [] if args.embed_wait_ms is None else ["--embed-wait-ms", str(args.embed_wait_ms)]
    set_threads(args.baseline_threads)
    baseline = f"in process, sequential, {args.baseline_threads} thr"
    runs: dict[str, list[dict[str, float]]] = {baseline: [], **{f"HTTP, {n} client(s)": [] for n in levels}}
    loads = [os.getloadavg()[0]]
    with Gallery(home) as gallery, serving(home, options) as (client, pid):
        gallery.identify(photo)  # warm-up: models and index
        client.post("/v1/identify", content=photo).raise_for_status()
        warm = memory_mb(pid)
        for _ in range(args.rounds):
            runs[baseline].append(in_process(gallery, photo, args.requests))
            for n in levels:
                runs[f"HTTP, {n} client(s)"].append(through_http(client, photo, args.requests, n))
            loads.append(os.getloadavg()[0])
        end = memory_mb(pid)
    rows = {label: spread(row_runs) for label, row_runs in runs.items()}
    print(f"gallery of {args.size:,} people, {args.requests} identifies per row and round, {args.rounds} rounds")
    print(f"gallery {' '.join(options)}; load average (1 min) {', '.join(f'{x:.1f}' for x in loads)}")
    print(f"{'':32}{'p50 ms':>15}{'p99 ms':>17}{'requests/s':>17}{'batch':>7}  x sequential, per round")
    for label, row in rows.items():
        cells = [f"{row[m]:5.0f} ({row[m + '_min']:.0f}-{row[m + '_max']:.0f})" for m in ("p50_ms", "p99_ms")]
        rate = f"{row['requests_per_s']:5.2f} ({row['requests_per_s_min']:.2f}-{row['requests_per_s_max']:.2f})"
        batch = f"{row['mean_batch']:7.1f}" if "mean_batch" in row else " " * 7
        # Each round's rows met the same load, so the ratio within a round is the fair one.
        pairs = zip(runs[label], runs[baseline], strict=True)
        ratios = [run["requests_per_s"] / alone["requests_per_s"] for run, alone in pairs]
        print(f"{label:32}{cells[0]:>15}{cells[1]:>17}{rate:>17}{batch}  {', '.join(f'{r:.2f}' for r in ratios)}")
    print(
        f"serving process: RSS {warm['VmRSS']:.0f} MB after warm-up, {end['VmRSS']:.0f} MB at the end "
        f"(peak {end['VmHWM']:.0f} MB)"
    )
    report = {"options": options, "rows": rows, "runs": runs, "rss_mb": {"warm": warm, "end": end}, "load": loads}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
