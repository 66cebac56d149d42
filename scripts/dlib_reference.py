"""Record the original dlib's outputs on data/ photos, for the parity tests.

Needs dlib's Python module (``pip install dlib``, a ~15 minute build) and
face-recognition-models, in any environment; gallery itself never imports dlib:

    python scripts/dlib_reference.py data tests/fixtures/dlib_reference.npz

Arrays written (M faces over all photos, one row per dlib detection at upsample 0):
    images        file names, sorted; ``face_image`` indexes into it
    face_image    (M,)          photo index of each face
    box           (M, 4) int    dlib rectangle left, top, right, bottom (inclusive corners)
    score         (M,) float64  mmod detector confidence
    landmarks     (M, 5, 2) int 5-point shape on that rectangle
    chips         (M, 150, 150, 3) uint8  get_face_chip(size=150, padding=0.25), one face per call
    descriptors   (M, 128) float64  compute_face_descriptor(chip)
    up1_*         the same detections (image index, box, score) at upsample 1 for ``UPSAMPLED``
Photos are decoded with Pillow to RGB, exactly as gallery loads them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

UPSAMPLED = ("group_of_six.jpg", "two_people.jpg")


def _model(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec and spec.submodule_search_locations, "pip install face-recognition-models"
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


def main(photo_dir: Path, out: Path) -> None:
    detector = dlib.cnn_face_detection_model_v1(_model("mmod_human_face_detector.dat"))
    predictor = dlib.shape_predictor(_model("shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(_model("dlib_face_recognition_resnet_model_v1.dat"))
    names = sorted(p.name for p in photo_dir.glob("*.jpg"))
    rows: dict[str, list] = {k: [] for k in ("face_image", "box", "score", "landmarks", "chips", "descriptors")}
    up1: dict[str, list] = {"image": [], "box": [], "score": []}
    for i, name in enumerate(names):
        rgb = np.asarray(Image.open(photo_dir / name).convert("RGB"))
        for det in detector(rgb, 0):
            r = det.rect
            shape = predictor(rgb, r)
            chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            rows["face_image"].append(i)
            rows["box"].append((r.left(), r.top(), r.right(), r.bottom()))
            rows["score"].append(det.confidence)
            rows["landmarks"].append([(p.x, p.y) for p in shape.parts()])
            rows["chips"].append(chip)
            rows["descriptors"].append(np.array(recognizer.compute_face_descriptor(chip)))
        if name in UPSAMPLED:
            for det in detector(rgb, 1):
                r = det.rect
                up1["image"].append(i)
                up1["box"].append((r.left(), r.top(), r.right(), r.bottom()))
                up1["score"].append(det.confidence)
        print(f"{name}: {sum(1 for j in rows['face_image'] if j == i)} faces", file=sys.stderr)
    np.savez_compressed(
        out,
        images=np.array(names),
        face_image=np.array(rows["face_image"], dtype=np.int64),
        box=np.array(rows["box"], dtype=np.int64),
        score=np.array(rows["score"], dtype=np.float64),
        landmarks=np.array(rows["landmarks"], dtype=np.int64),
        chips=np.array(rows["chips"], dtype=np.uint8),
        descriptors=np.array(rows["descriptors"], dtype=np.float64),
        up1_image=np.array(up1["image"], dtype=np.int64),
        up1_box=np.array(up1["box"], dtype=np.int64),
        up1_score=np.array(up1["score"], dtype=np.float64),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
