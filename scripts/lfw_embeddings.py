"""Embed a labelled photo folder (one sub-folder per identity, e.g. LFW) with gallery's own pipeline.

The CNN detector at upsample 0, the face nearest the photo's centre (LFW centres the labelled
person; the largest face is a bystander in some photos), 128-d descriptors; photos without a
face are listed as failures. Writes an .npz with ``paths``, ``labels`` (folder
names), ``embeddings`` (float32) and ``failures`` (paths), the input of
scripts/calibration_study.py and scripts/learn_default_rule.py. Resumes from a partial file.

    nice -n 10 python scripts/lfw_embeddings.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_embeddings.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
BATCH = 32  # photos embedded per call: the embedder batches their chips
CHECKPOINT_EVERY = 20  # batches


def labelled_photos(root: Path) -> list[tuple[str, str]]:
    """(relative path, identity) of every photo, sorted."""
    return [(f"{folder.name}/{photo.name}", folder.name)
            for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for photo in sorted(folder.iterdir()) if photo.suffix.lower() in PHOTO_SUFFIXES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gallery.vision.image import load_rgb
    from gallery.vision.pipeline import FacePipeline

    pipeline = FacePipeline()
    photos = labelled_photos(args.root)
    done: dict[str, np.ndarray | None] = {}
    if args.out.exists():
        previous = np.load(args.out)
        if str(previous["model"]) != pipeline.model_id:
            sys.exit(f"{args.out} holds embeddings of another model ({previous['model']}); choose another file")
        done.update(zip(previous["paths"].tolist(), previous["embeddings"], strict=True))
        done.update((path, None) for path in previous["failures"].tolist())
    todo = [(path, label) for path, label in photos if path not in done]
    print(f"{len(photos)} photos, {len(done)} already embedded, {len(todo)} to go", flush=True)
    started = time.time()
    for batch_number, start in enumerate(range(0, len(todo), BATCH)):
        batch = todo[start:start + BATCH]
        images = [load_rgb(args.root / p) for p, _ in batch]
        for (path, _), image, found in zip(batch, images, pipeline.faces_many(images), strict=True):
            done[path] = centre_face(found, image.shape).embedding if found else None
        if (batch_number + 1) % CHECKPOINT_EVERY == 0 or start + BATCH >= len(todo):
            save(args.out, photos, done, pipeline.model_id)
            rate = (start + len(batch)) / (time.time() - started)
            print(f"{start + len(batch)}/{len(todo)} ({rate:.1f} photos/s)", flush=True)
    save(args.out, photos, done, pipeline.model_id)


def centre_face(found: list, shape: tuple[int, ...]):  # noqa: ANN201 (a gallery.vision Face)
    """The face whose box centre is nearest the photo's centre."""
    if not found:
        return None
    middle_y, middle_x = shape[0] / 2, shape[1] / 2

    def off_centre(face) -> float:  # noqa: ANN001
        return ((face.box[0] + face.box[2]) / 2 - middle_x) ** 2 + ((face.box[1] + face.box[3]) / 2 - middle_y) ** 2

    return min(found, key=off_centre)


def save(out: Path, photos: list[tuple[str, str]], done: dict[str, np.ndarray | None], model: str) -> None:
    """Write what is embedded so far, atomically."""
    embedded = [(path, label) for path, label in photos if done.get(path, None) is not None]
    failures = [path for path, _ in photos if path in done and done[path] is None]
    temporary = out.with_suffix(".partial.npz")
    np.savez(temporary, paths=np.array([p for p, _ in embedded]), labels=np.array([lab for _, lab in embedded]),
             embeddings=np.stack([done[p] for p, _ in embedded]).astype(np.float32) if embedded
             else np.empty((0, 128), np.float32),
             failures=np.array(failures, dtype=str), model=np.array(model))
    temporary.replace(out)


if __name__ == "__main__":
    main()
