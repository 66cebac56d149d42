"""Search latency and recall@1 of the gallery's index at several sizes, on synthetic faces.

    python -m benchmarks.bench_search [--sizes 1000,100000,1000000] [--queries 500] [--alternatives]
    python -m benchmarks.bench_search --home /tmp/gallery-bench/size-1000000   # reuse bench_identify's

For each size: a gallery of that many people (one dlib-like descriptor each, from
``benchmarks/synthetic.py``), ``FaceIndex.build`` (exact up to ``EXACT_UP_TO``, PQ codes for
candidates beyond), then single-query searches as the store runs them (one thread, k=8):
median and p95 latency, and recall@1 against exact search, for genuine probes (another
photo of an enrolled person) and strangers, reported separately. Also: exact search's own
latency at that size, resident memory, and what a write costs (a face added, then one
removed, each by ``updated`` as the store does and saved: seconds and megabytes written).
``--candidates 4,16`` compares how many candidates per neighbour are ranked exactly;
``--alternatives`` adds FAISS's HNSW graph and IVF-Flat
lists, measured and rejected.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import gallery  # noqa: F401 - first, so torch and FAISS load with the OpenMP wait policy gallery sets

# isort: split
import faiss
import numpy as np

from benchmarks.synthetic import FaceModel
from gallery.store.index import DEFAULT_POLICY, FaceIndex, IndexPolicy

K = 8


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def latencies_ms(search, queries: np.ndarray) -> tuple[list[float], list[int]]:
    times, top = [], []
    for query in queries:
        start = time.perf_counter()
        found = search(query)
        times.append(1000 * (time.perf_counter() - start))
        top.append(found)
    return times, top


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} ms, p95 {np.percentile(times, 95):.3f} ms"


def recall(top: list[int], truth: np.ndarray) -> float:
    return float(np.mean(np.array(top) == truth))


def gallery_home_faces(home: Path, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces of a ``bench_identify`` home (face id = row + 1) and its genuine probes."""
    with sqlite3.connect(f"file:{home / 'gallery.db'}?mode=ro", uri=True) as db:
        count = db.execute("SELECT count(*) FROM faces").fetchone()[0]
        photos = np.empty((count, 128), np.float32)
        for row, (face_id, blob) in enumerate(db.execute("SELECT id, embedding FROM faces ORDER BY id")):
            assert face_id == row + 1
            photos[row] = np.frombuffer(blob, "<f4")
    return np.arange(1, count + 1, dtype=np.int64), photos, np.load(home / "probes.npz")["probes"][:queries]


def write_costs(index: FaceIndex, ids: np.ndarray, photos: np.ndarray) -> str:
    """Seconds and megabytes written to add a face to ``index`` and then remove another, each saved."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        start = time.perf_counter()
        index.save(folder / "faces.faiss", gallery_id="bench", generation=1)
        first_save_s = time.perf_counter() - start
        costs = [f"first save {first_save_s:.2f} s ({files_mb(folder, {}):.0f} MB)"]
        steps = (
            ("adding a face", np.empty(0, np.int64), ids[-1:] + 1, photos[:1] + 0.01),
            ("removing one", ids[:1], np.empty(0, np.int64), photos[:0]),
        )
        for generation, (what, gone, new, vectors) in enumerate(steps, start=2):
            before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
            start = time.perf_counter()
            index = index.updated(gone, new, vectors)
            update_s = time.perf_counter() - start
            start = time.perf_counter()
            index.save(folder / "faces.faiss", gallery_id="bench", generation=generation)
            save_s = time.perf_counter() - start
            costs.append(f"{what} {update_s:.2f} s + save {save_s:.2f} s ({files_mb(folder, before):.0f} MB written)")
    return "; ".join(costs)


def files_mb(folder: Path, before: dict[str, int]) -> float:
    """Megabytes of the files in ``folder`` that are new or changed since ``before`` (name -> mtime)."""
    changed = [p for p in folder.iterdir() if before.get(p.name) != p.stat().st_mtime_ns]
    return sum(p.stat().st_size for p in changed) / 2**20


def measure(
    size: int, queries: int, candidates: list[int], alternatives: bool, model: FaceModel, home: Path | None
) -> None:
    rng = np.random.default_rng(size)
    if home is None:
        photos, _, genuine = model.gallery(size, queries, rng)
        ids = np.arange(1, size + 1, dtype=np.int64)
    else:
        ids, photos, genuine = gallery_home_faces(home, queries)
        size = len(ids)
    strangers = model.strangers(queries, rng)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    truth = {kind: ids[faiss.knn(q, photos, 1)[1][:, 0]] for kind, q in (("genuine", genuine), ("stranger", strangers))}
    faiss.omp_set_num_threads(1)
    exact_times, _ = latencies_ms(lambda q: faiss.knn(q[None], photos, K), genuine[:100])
    print(f"\n## {size:,} faces\nexact search (IndexFlatL2, 1 thread): {summary(exact_times)}")

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    before, _ = rss_mb()
    start = time.perf_counter()
    if home is None:
        index = FaceIndex.build("bench", photos.shape[1], ids, photos)
        how = f"built in {time.perf_counter() - start:.1f} s ({os.cpu_count()} threads)"
    else:
        index, _ = FaceIndex.load(home / "faces.faiss")
        how = f"loaded from {home} in {time.perf_counter() - start:.1f} s"
    index_mb = rss_mb()[0] - before
    faiss.omp_set_num_threads(1)
    print(f"FaceIndex: {index.kind}, {how}, ~{index_mb:.0f} MB resident")
    for per_result in candidates if index.kind == "pq" else [None]:
        if per_result is not None:
            index.policy = IndexPolicy(candidates_per_result=per_result)
        label = f"{index.policy.candidates(K)} cand." if per_result is not None else "exact"
        for kind, q in (("genuine", genuine), ("stranger", strangers)):
            times, top = latencies_ms(lambda x: int(index.search(x, K)[0][1][0]), q)
            print(f"  {label:>10} {kind:>8}: {summary(times)}, recall@1 {recall(top, truth[kind]):.4f}")
    index.policy = DEFAULT_POLICY
    print(f"  a write (copy-on-write, then saved as the store does): {write_costs(index, ids, photos)}")
    index = None  # free it before the alternatives are built
    if alternatives:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        graph = faiss.IndexHNSWFlat(photos.shape[1], 32)
        graph.hnsw.efConstruction = 80
        start = time.perf_counter()
        graph.add(photos)
        print(f"HNSW (M=32, efConstruction 80): built in {time.perf_counter() - start:.1f} s; cannot remove a face")
        faiss.omp_set_num_threads(1)
        for ef in (128, 256, 384):
            params = faiss.SearchParametersHNSW(efSearch=ef)
            for kind, q in (("genuine", genuine), ("stranger", strangers)):
                times, top = latencies_ms(lambda x: int(graph.search(x[None], K, params=params)[1][0, 0]), q)
                # faiss numbers rows from 0; face ids here are row + 1.
                print(f"  efSearch {ef:>3} {kind:>8}: {summary(times)}, recall@1 {recall(top, truth[kind] - 1):.4f}")
        del graph
    if alternatives:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        nlist = int(4 * np.sqrt(size))
        lists = faiss.IndexIVFFlat(faiss.IndexFlatL2(photos.shape[1]), photos.shape[1], nlist)
        start = time.perf_counter()
        lists.train(photos)
        lists.add(photos)
        print(f"IVF-Flat, {nlist} lists: built in {time.perf_counter() - start:.1f} s")
        faiss.omp_set_num_threads(1)
        for nprobe in (16, 64, 128, 256):
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            for kind, q in (("genuine", genuine), ("stranger", strangers)):
                times, top = latencies_ms(lambda x: int(lists.search(x[None], K, params=params)[1][0, 0]), q)
                # IVF numbers rows from 0; face ids here are row + 1.
                print(f"  nprobe {nprobe:>3} {kind:>8}: {summary(times)}, recall@1 {recall(top, truth[kind] - 1):.4f}")
        del lists
    print(f"process peak resident memory so far: {rss_mb()[1]:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--queries", type=int, default=500, help="genuine probes, and as many strangers")
    parser.add_argument(
        "--candidates",
        default=str(DEFAULT_POLICY.candidates_per_result),
        help="candidates ranked exactly per neighbour (comma-separated values to compare)",
    )
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="also measure FAISS HNSW and IVF-Flat, the rejected alternatives (HNSW builds for minutes)",
    )
    parser.add_argument("--home", type=Path, action="append", help="a bench_identify gallery home to measure instead")
    args = parser.parse_args()
    print(
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"EXACT_UP_TO {DEFAULT_POLICY.exact_up_to:,}, PQ {DEFAULT_POLICY.subquantizers}x4 bits, "
        f"{DEFAULT_POLICY.candidates(K)} candidates for k={K}"
    )
    model = FaceModel.load()
    candidates = [int(n) for n in args.candidates.split(",")]
    for home in args.home or []:
        measure(0, args.queries, candidates, args.alternatives, model, home)
    for size in [] if args.home else (int(s) for s in args.sizes.split(",")):
        measure(size, args.queries, candidates, args.alternatives, model, None)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
