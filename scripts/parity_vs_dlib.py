"""Compare gallery's face pipeline with the original dlib, stage by stage, on a folder of photos.

Needs dlib's Python module beside gallery (``pip install dlib``; a ~15 minute build):

    python scripts/parity_vs_dlib.py ../shared/datasets --limit 400 --seed 0

Each stage gets dlib's output of the previous stage as input, so a difference is pinned to
the stage that made it: detection (boxes equal? score difference), landmarks on dlib's box
(identical?), chip from dlib's landmarks (max pixel difference), descriptor of dlib's chip
(max absolute difference). Photos are sampled across every sub-folder (a few hundred faces),
decoded with gallery's own loader; the worst case of each stage is printed.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import dlib  # type: ignore[import-not-found]
import numpy as np

from gallery.models.files import DETECTOR_FILE, LANDMARKS_FILE, RECOGNITION_FILE, model_path
from gallery.vision.chips import extract_chip
from gallery.vision.detector import FaceDetector
from gallery.vision.embedding import Embedder
from gallery.vision.image import load_rgb
from gallery.vision.landmarks import LandmarkPredictor

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".bmp"}
MAX_SIDE = 1600  # gallery detects on photos downscaled to this; parity is for what the detector sees


def sample_photos(root: Path, limit: int, seed: int) -> list[Path]:
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    random.Random(seed).shuffle(photos)
    return photos[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--limit", type=int, default=400, help="photos to sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dlib_detector = dlib.cnn_face_detection_model_v1(str(model_path(DETECTOR_FILE)))
    dlib_predictor = dlib.shape_predictor(str(model_path(LANDMARKS_FILE)))
    dlib_recognizer = dlib.face_recognition_model_v1(str(model_path(RECOGNITION_FILE)))
    detector, predictor, embedder = FaceDetector(), LandmarkPredictor(), Embedder()

    photos = faces = box_mismatches = landmark_mismatches = 0
    worst_score = worst_chip = worst_descriptor = 0.0
    worst_where: dict[str, str] = {}
    for path in sample_photos(args.root, args.limit, args.seed):
        rgb = load_rgb(path)
        if max(rgb.shape[:2]) > MAX_SIDE:
            continue
        photos += 1
        theirs = dlib_detector(rgb, 0)
        ours = detector.detect(rgb)
        their_boxes = sorted(
            (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in theirs
        )
        our_boxes = sorted((*d.box, d.score) for d in ours)
        if [b[:4] for b in their_boxes] != [b[:4] for b in our_boxes]:
            box_mismatches += 1
            print(f"box mismatch in {path}: dlib {their_boxes} gallery {our_boxes}")
        else:
            for t, o in zip(their_boxes, our_boxes, strict=False):
                if abs(t[4] - o[4]) > worst_score:
                    worst_score, worst_where["score"] = abs(t[4] - o[4]), str(path)
        for det in theirs:
            faces += 1
            r = det.rect
            shape = dlib_predictor(rgb, r)
            their_points = np.array([(p.x, p.y) for p in shape.parts()])
            our_points = predictor.predict(rgb, (r.left(), r.top(), r.right(), r.bottom()))
            if not np.array_equal(their_points, our_points):
                landmark_mismatches += 1
                print(f"landmark mismatch in {path}: dlib {their_points.tolist()} gallery {our_points.tolist()}")
            their_chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            our_chip = extract_chip(rgb, their_points)
            chip_diff = float(np.abs(their_chip.astype(int) - our_chip.astype(int)).max())
            if chip_diff > worst_chip:
                worst_chip, worst_where["chip"] = chip_diff, str(path)
            their_descriptor = np.array(dlib_recognizer.compute_face_descriptor(their_chip))
            our_descriptor = embedder.embed(their_chip[None])[0]
            descriptor_diff = float(np.abs(their_descriptor - our_descriptor).max())
            if descriptor_diff > worst_descriptor:
                worst_descriptor, worst_where["descriptor"] = descriptor_diff, str(path)

    print(f"photos {photos}, faces {faces}")
    print(f"detection: photos with different boxes {box_mismatches}, worst score difference {worst_score:.2e}")
    print(f"landmarks: faces with any different point {landmark_mismatches} of {faces}")
    print(f"chips: worst pixel difference {worst_chip:g}")
    print(f"descriptors: worst absolute difference {worst_descriptor:.2e}")
    print(f"worst cases: {worst_where}")


if __name__ == "__main__":
    main()
