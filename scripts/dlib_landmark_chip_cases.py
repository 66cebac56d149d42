"""Record dlib's landmarks and face chips on hard cases, for tests/test_landmarks.py and test_chips.py.

Complements ``dlib_reference.py`` (which covers dlib's own detections) with boxes and
landmarks chosen to hit the delicate paths: boxes whose ``right - left`` is 2 mod 4 (a
cascade-0 feature pixel then lies on a .5 rounding tie), boxes partly or wholly outside
the photo, tiny boxes, and chips that need one or more ``pyramid_down`` steps or reach
past the border (black pixels). Needs dlib's Python module and face-recognition-models;
gallery itself never imports dlib:

    python scripts/dlib_landmark_chip_cases.py data tests/fixtures/dlib_landmark_chip_cases.npz

Arrays written (seeded, so the file is reproducible):
    images            photo file names, sorted; the ``*_image`` arrays index into it
    box_image         (B,) int; box (B, 4) int left, top, right, bottom (dlib, inclusive)
    box_landmarks     (B, 5, 2) int  dlib.shape_predictor on that box
    chip_image        (C,) int; chip_landmarks (C, 5, 2) int  the 5 points given to get_face_chip
    chip_sha256       (C,) str  SHA-256 of get_face_chip(size=150, padding=0.25) bytes, one face per call
    full_chip_index   (K,) int  cases whose chips are stored whole, in full_chips (K, 150, 150, 3)
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

SEED = 20240605
TIE_BOXES_PER_PHOTO = 10
RANDOM_BOXES_PER_PHOTO = 8
CHIPS_PER_PHOTO = 12


def _model(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec and spec.submodule_search_locations, "pip install face-recognition-models"
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


def _boxes(rng: np.random.Generator, width: int, height: int) -> list[tuple[int, int, int, int]]:
    boxes = []
    for i in range(TIE_BOXES_PER_PHOTO):
        span = int(rng.integers(24, int(min(width, height) * 0.9)))
        span += (2 - span) % 4  # right - left == 2 (mod 4)
        vspan = span + (0 if i % 3 == 0 else int(rng.integers(-6, 7)))  # every third: both spans
        left = int(rng.integers(-span // 4, width - 3 * span // 4))
        top = int(rng.integers(-vspan // 4, height - 3 * vspan // 4))
        boxes.append((left, top, left + span, top + vspan))
    for _ in range(RANDOM_BOXES_PER_PHOTO):
        span = int(rng.integers(24, int(min(width, height) * 1.2)))
        vspan = span + int(rng.integers(-8, 9))
        left = int(rng.integers(-span // 2, width - span // 2))
        top = int(rng.integers(-vspan // 2, height - vspan // 2))
        boxes.append((left, top, left + span, top + vspan))
    boxes.append((width // 3, height // 3, width // 3 + 9, height // 3 + 11))  # tiny
    boxes.append((width + 5, -60, width + 80, 15))  # wholly outside: every feature reads 0
    return boxes


def _chip_points(rng: np.random.Generator, points: np.ndarray, kind: int) -> np.ndarray:
    centre = points.mean(axis=0)
    if kind == 0:  # the predicted landmarks as they are
        return points
    if kind == 1:  # jittered
        return points + rng.integers(-3, 4, points.shape)
    if kind == 2:  # a large face: one or two pyramid_down steps
        return np.round((points - centre) * rng.uniform(2.0, 6.0) + centre).astype(np.int64)
    # a small, rotated face
    angle = rng.uniform(-0.8, 0.8)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.round((points - centre) @ rotation.T * rng.uniform(0.3, 0.9) + centre).astype(np.int64)


def main(photo_dir: Path, out: Path) -> None:
    rng = np.random.default_rng(SEED)
    predictor = dlib.shape_predictor(_model("shape_predictor_5_face_landmarks.dat"))
    names = sorted(p.name for p in photo_dir.glob("*.jpg"))
    box_image, boxes, box_landmarks = [], [], []
    chip_image, chip_landmarks, chip_sha256, chips, chip_widths = [], [], [], [], []
    for i, name in enumerate(names):
        rgb = np.asarray(Image.open(photo_dir / name).convert("RGB"))
        height, width = rgb.shape[:2]
        photo_boxes = _boxes(rng, width, height)
        for box in photo_boxes:
            shape = predictor(rgb, dlib.rectangle(*box))
            box_image.append(i)
            boxes.append(box)
            box_landmarks.append([(p.x, p.y) for p in shape.parts()])
        for k in range(CHIPS_PER_PHOTO):
            source = np.array(box_landmarks[-len(photo_boxes) + k % (len(photo_boxes) - 1)])
            points = _chip_points(rng, source, k % 4)
            rect = dlib.rectangle(0, 0, 1, 1)  # get_face_chip reads only the parts
            shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in points])
            chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            chip_image.append(i)
            chip_landmarks.append(points)
            chip_sha256.append(hashlib.sha256(np.ascontiguousarray(chip).tobytes()).hexdigest())
            chips.append(chip)
            chip_widths.append(dlib.get_face_chip_details(shape, 150, 0.25).rect.width())
    # Keep a few chips whole so a failing test can say how far off it is: a small face, one
    # and two pyramid steps (judged by the chip rectangle's width), and one reaching past the border.
    widths = np.array(chip_widths)
    has_black = np.array([(c == 0).all(axis=-1).any() for c in chips])
    full_chip_index = np.array(
        [
            np.flatnonzero((widths < 280) & ~has_black)[0],
            np.flatnonzero((widths > 320) & (widths < 560))[0],
            np.flatnonzero(widths > 640)[0],
            np.flatnonzero(has_black & (widths < 280))[0],
        ],
        dtype=np.int64,
    )
    np.savez_compressed(
        out,
        images=np.array(names),
        box_image=np.array(box_image, dtype=np.int64),
        box=np.array(boxes, dtype=np.int64),
        box_landmarks=np.array(box_landmarks, dtype=np.int64),
        chip_image=np.array(chip_image, dtype=np.int64),
        chip_landmarks=np.array(chip_landmarks, dtype=np.int64),
        chip_sha256=np.array(chip_sha256),
        full_chip_index=full_chip_index,
        full_chips=np.array([chips[k] for k in full_chip_index], dtype=np.uint8),
    )
    print(f"{len(boxes)} boxes, {len(chips)} chips", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
