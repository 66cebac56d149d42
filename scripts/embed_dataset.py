"""Embed every photo of a labelled folder (one sub-folder per identity) with gallery's pipeline.

    python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_faces.npz

For each photo the face nearest the photo's centre is kept (LFW centres the labelled person;
other faces in the frame are bystanders); a photo without a face at upsample 0 is retried at
upsample 1 and otherwise recorded as a failure to acquire. Saves, per photo: relative path,
identity label, box, score, the 150x150 chip, and the descriptor with and without the
mirrored-chip average (test-time augmentation), so evaluations need no second pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gallery.vision.embedding import Embedder
from gallery.vision.image import load_rgb
from gallery.vision.pipeline import FacePipeline

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".bmp"}


def centre_face(found, shape):
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(found, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    photos = sorted(p for p in args.root.glob("*/*") if p.suffix.lower() in PHOTO_SUFFIXES and not p.parent.name.startswith("_"))
    pipeline = FacePipeline()
    flipped = Embedder(flip=True)
    paths, labels, boxes, scores, chips, failures = [], [], [], [], [], []
    start = time.perf_counter()
    for i, path in enumerate(photos):
        rgb = load_rgb(path)
        found = pipeline.faces(rgb) or pipeline.faces(rgb, upsample=1)
        if not found:
            failures.append(str(path.relative_to(args.root)))
            continue
        face = centre_face(found, rgb.shape)
        paths.append(str(path.relative_to(args.root)))
        labels.append(path.parent.name)
        boxes.append(face.box)
        scores.append(face.score)
        chips.append(face.chip)
        if i % 250 == 0:
            print(f"{i}/{len(photos)} photos, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    chip_array = np.stack(chips)
    np.savez(
        args.out,
        paths=np.array(paths),
        labels=np.array(labels),
        boxes=np.array(boxes),
        scores=np.array(scores),
        chips=chip_array,
        embeddings=pipeline.embedder.embed(chip_array),
        embeddings_flip=flipped.embed(chip_array),
        failures=np.array(failures),
    )
    print(f"{len(paths)} faces, {len(failures)} failures to acquire, {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
