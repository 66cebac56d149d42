"""Labelled photo folders embedded for calibration and evaluation: who is in each photo, from the layout.

The layout is ``gallery.folders``' (one sub-folder per identity, or one photo per identity
named after the file); folders whose name starts with ``_`` hold unlabelled extras and are
skipped. In a photo with several faces the one nearest the middle is the labelled person
(labelled sets such as LFW centre them; the largest face is sometimes a bystander). A photo
without a face is looked at closer, as enrolment does (``FacePipeline.look_closer``), and
otherwise counted as a failure to acquire.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gallery.errors import ImageError
from gallery.folders import scan_people_folder
from gallery.vision.embedding import DESCRIPTOR_SIZE
from gallery.vision.image import load_rgb
from gallery.vision.pipeline import Face, FacePipelineProtocol

UNLABELLED_PREFIX = "_"
BATCH_PHOTOS = 64  # photos whose chips are embedded together: bounds memory on big folders


@dataclass(frozen=True)
class LabelledFaces:
    """The labelled person's embedding in every photo of a folder where a face was found.

    Attributes:
        root: the folder.
        model: id of the model that made the embeddings.
        paths: (n,) each embedded photo, relative to ``root``.
        labels: (n,) its identity.
        embeddings: (n, d) float32.
        failure_paths, failure_labels: the photos where no face was found, and whose they are.
        unreadable: (relative path, reason) of the files that could not be decoded (not counted as failures).
    """

    root: Path
    model: str
    paths: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray
    failure_paths: np.ndarray
    failure_labels: np.ndarray
    unreadable: tuple[tuple[str, str], ...]

    @property
    def identities(self) -> int:
        return len(np.union1d(self.labels, self.failure_labels))

    def embedding_of(self) -> dict[str, np.ndarray]:
        """Relative path (``/``-separated) -> embedding, for pair lists."""
        return dict(zip(self.paths.tolist(), self.embeddings, strict=True))


def labelled_photos(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """(photo, identity) for every photo of the labelled folder, by identity then file name.

    Raises:
        ImageNotFound: ``root`` is not a folder.
    """
    return [
        (photo, person.name)
        for person in scan_people_folder(root)
        if not person.name.startswith(UNLABELLED_PREFIX)
        for photo in person.photos
    ]


def embed_labelled(
    root: str | os.PathLike,
    pipeline: FacePipelineProtocol,
    *,
    photos: list[tuple[Path, str]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LabelledFaces:
    """Embed the labelled person of every photo in ``root`` (see the module's docstring).

    Args:
        root: the labelled folder.
        pipeline: the face pipeline (its model is the gallery's).
        photos: the (photo, identity) pairs to embed; defaults to ``labelled_photos(root)``.
        progress: called as ``progress(photos_done, photos_total)``.
    """
    root = Path(root)
    todo = labelled_photos(root) if photos is None else photos
    faces = _LabelledRun(root)
    for start in range(0, len(todo), BATCH_PHOTOS):
        faces.embed(pipeline, todo[start : start + BATCH_PHOTOS])
        if progress is not None:
            progress(min(start + BATCH_PHOTOS, len(todo)), len(todo))
    return LabelledFaces(
        root=root,
        model=pipeline.model_id,
        paths=np.array(faces.paths, dtype=str),
        labels=np.array(faces.labels, dtype=str),
        embeddings=(
            np.stack(faces.embeddings).astype(np.float32)
            if faces.embeddings
            else np.empty((0, DESCRIPTOR_SIZE), np.float32)
        ),
        failure_paths=np.array(faces.failure_paths, dtype=str),
        failure_labels=np.array(faces.failure_labels, dtype=str),
        unreadable=tuple(faces.unreadable),
    )


@dataclass
class _LabelledRun:
    """What ``embed_labelled`` has found so far."""

    root: Path
    paths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    failure_paths: list[str] = field(default_factory=list)
    failure_labels: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def embed(self, pipeline: FacePipelineProtocol, batch: list[tuple[Path, str]]) -> None:
        """One batch of photos through the pipeline, its chips embedded together."""
        readable: list[tuple[Path, str, tuple[int, int]]] = []

        def decoded() -> Iterator[np.ndarray]:
            for photo, label in batch:
                try:
                    rgb = load_rgb(photo)
                except ImageError as error:
                    self.unreadable.append((_relative(photo, self.root), str(error)))
                    continue
                readable.append((photo, label, rgb.shape[:2]))
                yield rgb

        found_per_photo = pipeline.faces_many(decoded())  # consumes every photo before returning
        for (photo, label, shape), found in zip(readable, found_per_photo, strict=True):
            found = found or pipeline.look_closer(photo, shape)
            if not found:
                self.failure_paths.append(_relative(photo, self.root))
                self.failure_labels.append(label)
                continue
            self.paths.append(_relative(photo, self.root))
            self.labels.append(label)
            self.embeddings.append(_middle_face(found, shape).embedding)


def _middle_face(found: list[Face], shape: tuple[int, int]) -> Face:
    height, width = shape

    def off_centre(face: Face) -> float:
        left, top, right, bottom = face.box
        return ((left + right) / 2 - width / 2) ** 2 + ((top + bottom) / 2 - height / 2) ** 2

    return min(found, key=off_centre)


def _relative(photo: Path, root: Path) -> str:
    return photo.relative_to(root).as_posix()
