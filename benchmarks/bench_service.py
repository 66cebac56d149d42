"""The HTTP service against the library in one process: identify latency and throughput, and the server's memory.

    python -m benchmarks.bench_service [--size 100000] [--requests 48] [--clients 1,4,16]
        [--work /tmp/gallery-bench]

A gallery of ``--size`` synthetic people (``bench_identify.build_home``, made once under
``--work`` and reused) is identified against with a 640x480 photo holding one face (the real
models): first ``--requests`` times in this process, one after another, with no HTTP
(``Gallery.identify``); then through ``gallery serve`` (a separate process, uvicorn, the
default settings but an unbounded rate) by 1, 4 and 16 concurrent clients, ``--requests``
requests at each level. Prints p50/p99 latency and requests per second for each, and the
serving process's resident memory after warm-up and at the end (VmRSS and peak VmHWM).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.bench_identify import build_home, refresh_home
from benchmarks.bench_pipeline import photo_640x480

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


def in_process(home: Path, photo: bytes, requests: int) -> dict[str, float]:
    from gallery import Gallery

    with Gallery(home) as gallery:
        gallery.identify(photo)  # warm-up: models and index
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


def through_http(home: Path, photo: bytes, requests: int, levels: list[int]) -> tuple[dict, dict, dict]:
    from gallery import Gallery

    with Gallery(home) as gallery:
        name = f"bench-{time.time_ns()}"
        key = gallery.hosting.create_key(name, ["identify"]).secret
    port = 8700 + os.getpid() % 200
    command = [sys.executable, "-m", "gallery", "--home", str(home), "serve", "--port", str(port)]
    command += ["--rate-limit", "1000000/minute", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            client.post("/v1/identify", content=photo).raise_for_status()  # warm-up: models, index
            warm = memory_mb(server.pid)
            results = {}
            for clients in levels:

                def one(_: int) -> float:
                    began = time.perf_counter()
                    response = client.post("/v1/identify", content=photo)
                    response.raise_for_status()
                    return time.perf_counter() - began

                start = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    latencies = list(pool.map(one, range(requests)))
                results[clients] = summary(latencies, time.perf_counter() - start)
            end = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)
    return results, warm, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clients", default="1,4,16")
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
    load = os.getloadavg()
    baseline = in_process(home, photo, args.requests)
    served, warm, end = through_http(home, photo, args.requests, levels)
    print(f"gallery of {args.size:,} people, {args.requests} identifies per row, load average {load[0]:.1f}")
    print(f"{'':22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}")
    rows = [("in process, sequential", baseline)] + [(f"HTTP, {n} client(s)", served[n]) for n in levels]
    for label, row in rows:
        print(f"{label:22}{row['p50_ms']:9.0f}{row['p99_ms']:9.0f}{row['requests_per_s']:8.2f}")
    print(
        f"serving process: RSS {warm['VmRSS']:.0f} MB after warm-up, {end['VmRSS']:.0f} MB at the end "
        f"(peak {end['VmHWM']:.0f} MB)"
    )
    print(json.dumps({"baseline": baseline, "served": served, "rss_mb": {"warm": warm, "end": end}, "load": load}))


if __name__ == "__main__":
    main()
