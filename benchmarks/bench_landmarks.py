"""Milliseconds per face of LandmarkPredictor (one box per call and all of a photo's boxes at
once) and milliseconds per chip of extract_chip, medians over the dlib reference faces.

    python -m benchmarks.bench_landmarks [--runs 5]

Faces, boxes and landmarks come from tests/fixtures/dlib_reference.npz (dlib's detections
on data/ photos). Besides wall-clock time it reports this thread's CPU time, which is the
steadier figure on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from gallery.vision.chips import chip_details, chip_sampling, extract_chip
from gallery.vision.landmarks import LandmarkPredictor

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "fixtures" / "dlib_reference.npz"


def _median_ms(work: Callable[[], object], runs: int, per: int = 1) -> tuple[float, float]:
    """Median wall-clock and thread-CPU milliseconds of ``work``, divided by ``per``."""
    wall, cpu = [], []
    for _ in range(runs):
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        work()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.thread_time() - start_cpu)
    return 1000 * statistics.median(wall) / per, 1000 * statistics.median(cpu) / per


def _report(label: str, samples: list[tuple[float, float]]) -> None:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    print(f"{label:<34} {wall:6.3f} ms wall   {cpu:6.3f} ms cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ref = np.load(REFERENCE)
    photos = [np.asarray(Image.open(ROOT / "data" / name).convert("RGB")) for name in ref["images"]]
    references = zip(ref["face_image"], ref["box"], ref["landmarks"], strict=True)
    faces = [(photos[int(i)], box, points) for i, box, points in references]
    predictor = LandmarkPredictor()
    predictor.predict(faces[0][0], faces[0][1])  # load (and convert once) outside the timings

    single = [_median_ms(lambda: predictor.predict(photo, box), args.runs) for photo, box, _ in faces]
    _report(f"landmarks, 1 box per call ({len(faces)})", single)
    batched = []
    for i, photo in enumerate(photos):
        boxes = ref["box"][ref["face_image"] == i]
        if len(boxes):
            batched.append(_median_ms(lambda: predictor.predict_many(photo, boxes), args.runs, per=len(boxes)))
    _report(f"landmarks, per photo ({len(batched)} photos)", batched)
    boxes16 = np.repeat(faces[0][1][None], 16, axis=0)
    _report(
        "landmarks, 16 boxes per call",
        [_median_ms(lambda: predictor.predict_many(faces[0][0], boxes16), args.runs, per=16)],
    )

    chips = [_median_ms(lambda: extract_chip(photo, points), args.runs) for photo, _, points in faces]
    _report(f"chip ({len(faces)} faces)", chips)
    pyramid = [t for t, (photo, _, points) in zip(chips, faces, strict=True)
               if chip_sampling(photo.shape, chip_details(points)).level >= 0]  # fmt: skip
    if pyramid:
        _report(f"  of which via pyramid_down ({len(pyramid)})", pyramid)


if __name__ == "__main__":
    main()
