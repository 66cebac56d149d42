"""Embed a labelled photo folder (one sub-folder per identity, e.g. LFW) with gallery's own pipeline.

    nice -n 10 python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_flip.npz --plain-too

A thin wrapper over ``gallery.labelled.embed_labelled`` (which face is the labelled person's,
the closer look at faceless photos). Writes an .npz with ``paths`` (relative to the folder),
``labels``, ``embeddings`` (float32, the default pipeline's: descriptor averaged with the
mirrored chip's), ``model`` (its id), ``failures`` and ``failure_labels`` (photos without a
face); with ``--plain-too`` also ``embeddings_plain``, dlib's own descriptors of the same
chips (``FacePipeline(flip=False)``). The input of scripts/learn_default_rule.py,
scripts/calibration_study.py and scripts/lfw_view1_accuracy.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gallery.labelled import embed_labelled
from gallery.vision.embedding import DESCRIPTOR_SIZE, Embedder
from gallery.vision.pipeline import FacePipeline
from gallery.vision.threads import set_torch_threads


class FlipAndPlainEmbedder(Embedder):
    """The flip descriptor with dlib's plain one appended (256 values): the flip average computes both anyway."""

    def __init__(self) -> None:
        super().__init__(flip=True)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        plain = Embedder(self.batch_size).embed(chips)
        mirrored = Embedder(self.batch_size).embed(chips[:, :, ::-1])
        # The same float32 arithmetic as Embedder(flip=True), so the flip half is that embedder's output.
        return np.hstack([(plain + mirrored) * np.float32(0.5), plain])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="labelled folder: one sub-folder of photos per identity")
    parser.add_argument("out", type=Path, help="the .npz to write")
    parser.add_argument("--plain-too", action="store_true", help="also save dlib's plain descriptors")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    set_torch_threads(args.threads)
    pipeline = FacePipeline()
    if args.plain_too:
        pipeline.embedder = FlipAndPlainEmbedder()
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        print(f"\r{done}/{total} photos, {done / elapsed:.1f} photos/s", end="", file=sys.stderr, flush=True)

    faces = embed_labelled(args.root, pipeline, progress=progress)
    print(file=sys.stderr)
    embeddings = faces.embeddings
    extra = {}
    if args.plain_too:
        if len(embeddings) == 0:  # embed_labelled's empty array has one descriptor's width
            embeddings = np.empty((0, 2 * DESCRIPTOR_SIZE), np.float32)
        embeddings, extra["embeddings_plain"] = embeddings[:, :DESCRIPTOR_SIZE], embeddings[:, DESCRIPTOR_SIZE:]
    np.savez(
        args.out,
        paths=faces.paths,
        labels=faces.labels,
        embeddings=embeddings,
        model=np.array(faces.model),
        failures=faces.failure_paths,
        failure_labels=faces.failure_labels,
        **extra,
    )
    for path, reason in faces.unreadable:
        print(f"unreadable, skipped: {path}: {reason}", file=sys.stderr)
    print(
        f"{len(faces.paths)} photos with a face, {len(faces.failure_paths)} without, {len(faces.unreadable)} "
        f"unreadable; {faces.identities} identities; model {faces.model}; {time.perf_counter() - started:.0f} s; "
        f"wrote {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
