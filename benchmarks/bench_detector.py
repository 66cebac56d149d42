"""Milliseconds for FaceDetector.detect on a 640x480 photo, whole and by stage.

    python -m benchmarks.bench_detector [--runs 15] [--threads 2] [--upsample 0]

Uses torch.set_num_threads(2) (the 2-core target machine) and data/obama.jpg resized to
640x480 (one face). Reports wall-clock medians and minima, and the median CPU time of the
process (all threads). On a busy shared machine wall-clock times mostly measure the other
loads; with --threads 1 the CPU time is close to what an idle core would take.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gallery  # noqa: F401 - first, so torch and FAISS load with the OpenMP wait policy gallery sets

# isort: split
import numpy as np
import torch
from PIL import Image

from gallery.models.pretrained import load_detector_network
from gallery.vision.detector import FaceDetector, build_tiled_pyramid, decode_detections, network_input

PHOTO = Path(__file__).resolve().parent.parent / "data" / "obama.jpg"


def _timings_ms(action: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median and minimum wall-clock, and median process CPU, milliseconds of ``action``."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * statistics.median(wall), 1000 * min(wall), 1000 * statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--upsample", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    image = np.asarray(Image.open(PHOTO).convert("RGB").resize((640, 480), Image.BILINEAR))
    network, settings = load_detector_network()  # load (and convert once) outside the timings
    detector = FaceDetector()
    faces = detector.detect(image, upsample=args.upsample)  # warm-up
    print(f"640x480, upsample {args.upsample}, {args.threads} torch threads: {len(faces)} face(s)")

    tiled, rects = build_tiled_pyramid(image, settings)
    with torch.inference_mode():
        scores = network(network_input(tiled))[0, 0].numpy()

    def run_network() -> None:
        with torch.inference_mode():
            network(network_input(tiled))

    stages = {
        "detect (total)": lambda: detector.detect(image, upsample=args.upsample),
        "tiled pyramid": lambda: build_tiled_pyramid(image, settings),
        f"network {tiled.shape[0]}x{tiled.shape[1]}": run_network,
        "decode + NMS": lambda: decode_detections(scores, rects, settings),
    }
    for name, action in stages.items():
        median, minimum, cpu = _timings_ms(action, args.runs)
        print(f"{name:24s} median {median:7.1f} ms   min {minimum:7.1f} ms   cpu {cpu:7.1f} ms")


if __name__ == "__main__":
    main()
