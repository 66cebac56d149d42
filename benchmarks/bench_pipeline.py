"""Per-stage timings of the face pipeline on this machine, and of dlib where it is installed.

    python benchmarks/bench_pipeline.py [--runs 15] [--threads 2]

Stages: detector on a 640x480 photo with one face (no upsampling), 5-point landmarks per
face, chip extraction, embedding per chip at batch 1 and 32, and end-to-end
``gallery.faces()`` on the same photo. Medians of ``--runs`` runs after a warm-up; model
loading is excluded (and reported separately). If ``import dlib`` works, the same stages
run through dlib and the table shows dlib's time divided by ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gallery  # noqa: F401 - first, so torch and FAISS load with the OpenMP wait policy gallery sets

# isort: split
import numpy as np
import torch
from PIL import Image

from gallery.models.files import DETECTOR_FILE, LANDMARKS_FILE, RECOGNITION_FILE, model_path
from gallery.vision.chips import extract_chip
from gallery.vision.embedding import Embedder
from gallery.vision.pipeline import FacePipeline

DATA = Path(__file__).resolve().parent.parent / "data"


def photo_640x480() -> np.ndarray:
    """A 640x480 photo with one face: Obama's portrait on a grey background."""
    canvas = Image.new("RGB", (640, 480), (118, 118, 118))
    canvas.paste(Image.open(DATA / "obama.jpg").crop((0, 0, 480, 480)), (80, 0))
    return np.asarray(canvas)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall milliseconds of ``fn``, or the minimum with ``--best`` (see main)."""
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * (min(times) if BEST else statistics.median(times))


BEST = False


def ours(rgb: np.ndarray, runs: int) -> dict[str, float]:
    pipeline = FacePipeline()
    start = time.perf_counter()
    (face,) = pipeline.faces(rgb)  # loads every model
    load_ms = 1000 * (time.perf_counter() - start)
    chips32 = np.repeat(face.chip[None], 32, axis=0)
    plain = Embedder()  # dlib's own descriptor, the work dlib does; the pipeline adds the mirrored chip
    return {
        "first call incl. model load": load_ms,
        "detector 640x480": median_ms(lambda: pipeline.detector.detect(rgb), runs),
        "landmarks per face": median_ms(lambda: pipeline.landmarks.predict(rgb, face.box), runs * 20),
        "chip per face": median_ms(lambda: extract_chip(rgb, face.landmarks), runs * 20),
        "embedding per chip, batch 1": median_ms(lambda: plain.embed(chips32[:1]), runs * 2),
        "embedding per chip, batch 32": median_ms(lambda: plain.embed(chips32), runs) / 32,
        "faces() end to end, 640x480, 1 face (with mirrored chip)": median_ms(lambda: pipeline.faces(rgb), runs),
    }


def dlib_stages(rgb: np.ndarray, runs: int) -> dict[str, float] | None:
    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        return None
    detector = dlib.cnn_face_detection_model_v1(str(model_path(DETECTOR_FILE)))
    predictor = dlib.shape_predictor(str(model_path(LANDMARKS_FILE)))
    recognizer = dlib.face_recognition_model_v1(str(model_path(RECOGNITION_FILE)))
    rect = detector(rgb, 0)[0].rect
    shape = predictor(rgb, rect)
    chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
    chips32 = [chip] * 32

    def end_to_end() -> None:
        for det in detector(rgb, 0):
            recognizer.compute_face_descriptor(
                dlib.get_face_chip(rgb, predictor(rgb, det.rect), size=150, padding=0.25)
            )

    return {
        "detector 640x480": median_ms(lambda: detector(rgb, 0), max(3, runs // 3)),
        "landmarks per face": median_ms(lambda: predictor(rgb, rect), runs * 20),
        "chip per face": median_ms(lambda: dlib.get_face_chip(rgb, shape, size=150, padding=0.25), runs * 20),
        "embedding per chip, batch 1": median_ms(lambda: recognizer.compute_face_descriptor(chip), runs),
        "embedding per chip, batch 32": median_ms(lambda: recognizer.compute_face_descriptor(chips32), 3) / 32,
        "faces() end to end, 640x480, 1 face (with mirrored chip)": median_ms(end_to_end, max(3, runs // 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--best",
        action="store_true",
        help="report each stage's fastest run instead of the median: on a machine shared with "
        "other jobs the minimum is the closer estimate of the uncontended time",
    )
    args = parser.parse_args()
    global BEST
    BEST = args.best
    torch.set_num_threads(args.threads)
    rgb = photo_640x480()
    mine = ours(rgb, args.runs)
    theirs = dlib_stages(rgb, args.runs)
    statistic = "fastest" if BEST else "median"
    print(
        f"torch {torch.__version__}, {args.threads} threads, {statistic} of {args.runs}+ runs, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    print("| stage | gallery ms | dlib ms | dlib / gallery |")
    print("|---|---|---|---|")
    for stage, ms in mine.items():
        other = theirs.get(stage) if theirs else None
        ratio = f"{other / ms:.1f}x" if other else "-"
        print(f"| {stage} | {ms:.2f} | {f'{other:.2f}' if other else '-'} | {ratio} |")


if __name__ == "__main__":
    main()
