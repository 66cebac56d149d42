"""Warm ``identify`` latency and peak memory at several gallery sizes, beside face_recognition's API.

    python -m benchmarks.bench_identify [--sizes 1000,100000,1000000] [--runs 20]
        [--work /tmp/gallery-bench] [--face-recognition /root/frvenv/bin/python]

Each size gets a gallery home under ``--work`` (made once, then reused; ``bench_search
--home`` measures search on it too) whose people each have one synthetic descriptor
(``benchmarks/synthetic.py``; the stored face chip is a small grey placeholder, which
identify never reads). The rows are written straight into SQLite,
then ``Store.open`` rebuilds and saves the index as it would after losing the file, which
gives the rebuild time at that size. Then a fresh process opens the gallery, identifies a
640x480 photo with one face once to warm up, and ``--runs`` more times: median and p95
wall time per call, and the process's peak resident memory (everything: Python, torch, the
models and the index). Then one write each way: enrolling a person (the copy-on-write copy
of the index, the commit, the index file's save) and removing them, and the peak again.

With ``--face-recognition PYTHON`` (a separate venv with face_recognition installed) the
same photo goes through its API in a fresh process: ``face_encodings`` (its default HOG
detector, then again with ``model="cnn"``, dlib's CNN detector that gallery reimplements)
and ``face_distance`` over the same number of known float64 encodings.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.bench_pipeline import photo_640x480
from benchmarks.synthetic import FaceModel

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 50_000
PROBES = 1000  # other photos of enrolled people, kept beside the home for bench_search


def _placeholder_chip() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (150, 150), (128, 128, 128)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def build_home(home: Path, size: int) -> float:
    """Write ``size`` synthetic people into a new gallery; returns the index rebuild's seconds."""
    from gallery.store import INDEX_FILE, Store
    from gallery.vision.pipeline import FacePipeline

    model_id = FacePipeline().model_id  # what the gallery's default pipeline records

    home.mkdir(parents=True)
    Store.open(home, model=model_id).close()  # schema and migrations
    (home / INDEX_FILE).unlink()
    model = FaceModel.load()
    rng = np.random.default_rng(size)
    photos, shown, probes = model.gallery(size, PROBES, rng)
    np.savez(home / "probes.npz", shown=shown + 1, probes=probes)  # for bench_search --home (face id = row + 1)
    chip = _placeholder_chip()
    now = "2025-01-01 00:00:00.000000"
    landmarks = "[[60.0, 60.0], [70.0, 60.0], [100.0, 60.0], [90.0, 60.0], [80.0, 90.0]]"
    with sqlite3.connect(home / "gallery.db") as db:
        for start in range(0, size, CHUNK):
            n = min(CHUNK, size - start)
            vectors = photos[start : start + n]
            db.executemany(
                "INSERT INTO people (id, name, external_id, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)",
                ((start + i + 1, f"person {start + i + 1:07d}", now, now) for i in range(n)),
            )
            db.executemany(
                "INSERT INTO faces (id, person_id, embedding, model, box_left, box_top, box_right, box_bottom, "
                "landmarks, quality, photo_sha256, chip_jpeg, created_at) "
                "VALUES (?, ?, ?, ?, 40, 40, 140, 140, ?, 1.0, ?, ?, ?)",
                (
                    (
                        start + i + 1,
                        start + i + 1,
                        vectors[i].astype("<f4").tobytes(),
                        model_id,
                        landmarks,
                        f"{start + i + 1:064x}",
                        chip,
                        now,
                    )
                    for i in range(n)
                ),
            )
        db.execute("UPDATE store_state SET faces_generation = faces_generation + 1")
    return rebuild_index(home, size, model_id)


def rebuild_index(home: Path, size: int, model_id: str) -> float:
    """Time ``Store.open`` rebuilding the missing index file from the database, and mark the home done."""
    from gallery.store import INDEX_FILE, Store

    (home / INDEX_FILE).unlink(missing_ok=True)
    start_s = time.perf_counter()
    with Store.open(home, model=model_id) as store:  # finds no index file: rebuilds and saves it
        assert store.index_repair is not None
    rebuild_s = time.perf_counter() - start_s
    (home / "complete").write_text(json.dumps({"size": size, "rebuild_s": rebuild_s, "model": model_id}))
    return rebuild_s


def refresh_home(home: Path, size: int) -> None:
    """Bring a home made by an earlier version up to date: the pipeline's model id, a new index file."""
    from gallery.store import INDEX_FILE, IndexFileInvalid
    from gallery.store.index import FaceIndex
    from gallery.vision.pipeline import FacePipeline

    model_id = FacePipeline().model_id
    marker = json.loads((home / "complete").read_text())
    try:
        FaceIndex.load(home / INDEX_FILE)
        current = marker.get("model") == model_id
    except (IndexFileInvalid, FileNotFoundError):
        current = False
    if not current:
        # The descriptors are synthetic: any model id may label them.
        with sqlite3.connect(home / "gallery.db") as db:
            db.execute("UPDATE faces SET model = ?", (model_id,))
            db.execute("UPDATE store_state SET faces_generation = faces_generation + 1")
        rebuild_index(home, size, model_id)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_ours(home: Path, runs: int, threads: int) -> dict[str, float | str]:
    """In this (fresh) process: open the gallery, identify the photo, report times and memory."""
    from gallery import Gallery, set_threads

    set_threads(threads)
    photo = photo_640x480()
    start = time.perf_counter()
    gallery = Gallery(home)
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    gallery.identify(photo)  # loads the models
    first_s = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        (_face,) = gallery.identify(photo)
        times.append(1000 * (time.perf_counter() - start))
    kind = gallery._store._replica.snapshot.index.kind
    result = {
        "open_s": open_s,
        "first_identify_s": first_s,
        "median_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "peak_mb": peak_rss_mb(),
        "index": kind,
    }
    # A write: enrol one person (copy-on-write copy of the index, database commit, index save), remove them.
    start = time.perf_counter()
    gallery.enroll("Benchmark Visitor", ROOT / "data" / "obama.jpg", allow_similar=True)
    result["enroll_s"] = time.perf_counter() - start
    start = time.perf_counter()
    gallery.remove("Benchmark Visitor")
    result["remove_s"] = time.perf_counter() - start
    result["peak_with_writes_mb"] = peak_rss_mb()
    gallery.close()
    return result


FACE_RECOGNITION_SCRIPT = """
import json, statistics, sys, time
import numpy as np
import face_recognition
photo_path, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
known = np.load(sys.argv[4]).astype(np.float64)  # its encodings are float64
image = face_recognition.load_image_file(photo_path)
result = {}
for model in ("hog", "cnn"):
    face_recognition.face_encodings(image, model=model)  # warm-up
    times = []
    for _ in range(runs if model == "hog" else max(3, runs // 4)):
        start = time.perf_counter()
        (encoding,) = face_recognition.face_encodings(image, model=model)
        distances = face_recognition.face_distance(known, encoding)
        best = int(np.argmin(distances))
        times.append(1000 * (time.perf_counter() - start))
    result[model + "_median_ms"] = statistics.median(times)
times = []
for _ in range(runs):
    start = time.perf_counter()
    face_recognition.face_distance(known, encoding)
    times.append(1000 * (time.perf_counter() - start))
result["face_distance_median_ms"] = statistics.median(times)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        result["peak_mb"] = int(line.split()[1]) / 1024
print(json.dumps(result))
"""


def measure_face_recognition(python: str, size: int, runs: int, threads: int) -> dict[str, float]:
    model = FaceModel.load()
    with tempfile.TemporaryDirectory() as folder:
        known = Path(folder) / "known.npy"
        np.save(known, model.gallery(size, 0, np.random.default_rng(size))[0])
        photo = Path(folder) / "photo.png"
        Image.fromarray(photo_640x480()).save(photo)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(
            [python, "-c", FACE_RECOGNITION_SCRIPT, str(photo), str(size), str(runs), str(known)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gallery-bench")
    parser.add_argument("--face-recognition", metavar="PYTHON", help="a python with face_recognition installed")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: one fresh-process run
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_ours(args.measure, args.runs, args.threads)))
        return
    print(
        f"{os.cpu_count()} cores, {args.threads} threads, load average {os.getloadavg()[0]:.1f}; "
        f"warm identify of a 640x480 photo with one face, {args.runs} runs"
    )
    print(
        "| enrolled | index | rebuild s | open s | identify median ms | p95 ms | peak MB | enroll s | remove s "
        "| peak with writes MB |"
        + (" face_recognition hog / cnn ms | its face_distance ms | its peak MB |" if args.face_recognition else "")
    )
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if args.face_recognition else ""))
    for size in (int(s) for s in args.sizes.split(",")):
        home = args.work / f"size-{size}"
        if not (home / "complete").exists():
            if home.exists():
                raise SystemExit(f"{home} is incomplete: delete it and run again")
            build_home(home, size)
        refresh_home(home, size)
        rebuild_s = json.loads((home / "complete").read_text())["rebuild_s"]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_identify",
                "--measure",
                str(home),
                "--runs",
                str(args.runs),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        ours = json.loads(out.stdout.strip().splitlines()[-1])
        row = (
            f"| {size:,} | {ours['index']} | {rebuild_s:.1f} | {ours['open_s']:.2f} | {ours['median_ms']:.1f} | "
            f"{ours['p95_ms']:.1f} | {ours['peak_mb']:.0f} | {ours['enroll_s']:.2f} | {ours['remove_s']:.2f} | "
            f"{ours['peak_with_writes_mb']:.0f} |"
        )
        if args.face_recognition:
            theirs = measure_face_recognition(args.face_recognition, size, args.runs, args.threads)
            row += (
                f" {theirs['hog_median_ms']:.0f} / {theirs['cnn_median_ms']:.0f} | "
                f"{theirs['face_distance_median_ms']:.1f} | {theirs['peak_mb']:.0f} |"
            )
        print(row, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
