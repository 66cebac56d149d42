"""photo -> faces: detection, landmarks, alignment and embedding, in one call.

This is the only module that chains the vision stages; it knows nothing of storage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from gallery.arguments import whole_number
from gallery.types import Box
from gallery.vision.chips import CHIP_SIZE, extract_chip
from gallery.vision.detector import FaceDetector
from gallery.vision.embedding import Embedder
from gallery.vision.image import ImageInput, load_rgb
from gallery.vision.landmarks import LandmarkPredictor

# Detection runs on a copy whose longest side is at most this many pixels: a 12 MP phone
# photo would otherwise cost seconds in the detector for no gain, since faces that matter
# to a gallery are far larger than the detector's ~40 px minimum at this scale. Landmarks
# and chips are still taken from the full-resolution photo, and boxes are reported in it.
DETECTION_MAX_SIDE = 1600
# ``look_closer`` upsamples photos up to this size only: each step quadruples the detector's cost.
LOOK_CLOSER_MAX_PIXELS = 1_000_000
# Upsampling steps a caller may ask for: each quadruples the pixels the detector scans.
MAX_UPSAMPLE = 3


@dataclass(frozen=True, eq=False)
class Face:
    """One face found in a photo.

    Attributes:
        box: (left, top, right, bottom) in pixels of the original photo, dlib's inclusive corners,
            clipped to the photo: a face cut by the photo's edge has its box end at that edge
            (``0 <= left <= right < width``, likewise vertically), so it can be drawn on or cropped
            from the frame as is. The landmarks, chip and embedding come from the detector's
            whole box, which may reach past the edge (dlib's convention).
        score: the detector's confidence.
        landmarks: (5, 2) int array of (x, y) points (eye corners, base of the nose), rounded as dlib rounds.
        embedding: (128,) float32 descriptor; faces of one person lie within ~0.6 of each other.
        chip: (150, 150, 3) uint8 aligned face crop the embedding was computed from.
    """

    box: Box
    score: float
    landmarks: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)
    chip: np.ndarray = field(repr=False)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1


class ChipEmbedder(Protocol):
    """What turns aligned face chips into descriptors (``gallery.vision.embedding.Embedder``)."""

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 chips -> (N, d) float32 descriptors; N may be 0."""
        ...


class FacePipelineProtocol(Protocol):
    """What the gallery asks of a face pipeline: the plug-in point that ``FacePipeline`` and the tests' fake fill.

    ``Gallery``, bulk enrolment and calibration call only these; mypy checks that both the real
    pipeline and ``tests/fakes.py``'s ``FakePipeline`` satisfy it, so the fake cannot drift.
    """

    @property
    def model_id(self) -> str:
        """Id of the embedding model, recorded with every stored embedding."""
        ...

    @property
    def embedder(self) -> ChipEmbedder:
        """The descriptor network alone, for re-embedding stored chips (``Gallery.reembed``)."""
        ...

    def faces(self, image: ImageInput, *, upsample: int = 0) -> list[Face]:
        """Every face in ``image``, largest first; an empty list when there is none."""
        ...

    def faces_many(self, images: Iterable[ImageInput], *, upsample: int = 0) -> list[list[Face]]:
        """The faces of each photo taken from ``images`` (one list per photo, in order), largest first."""
        ...

    def look_closer(self, image: ImageInput, shape: tuple[int, ...]) -> list[Face]:
        """The faces of a photo in which ``faces`` found none, looked for harder (``shape``: the decoded photo's)."""
        ...


class FacePipeline:
    """Detector, landmark predictor and embedder, each loaded on first use.

    Args:
        flip: average each descriptor with its mirrored chip's (test-time augmentation).
            On by default because it measurably helps: on all 3,200 LFW View 1 pairs it cut
            errors at dlib's 0.6 from 48 to 30 (22 pairs fixed, 4 broken; exact McNemar
            p = 0.0005; scripts/lfw_view1_accuracy.py). It doubles the embedding work
            (a few ms per face). ``flip=False`` gives exactly dlib's descriptors.
        wrap_embedder: given the network's ``Embedder``, returns what the pipeline embeds its
            chips through instead: one computing the same descriptors another way, e.g.
            ``gallery.service.batching.BatchingEmbedder``, which shares forward passes between
            threads. ``model_id`` stays the network's.
    """

    def __init__(self, *, flip: bool = True, wrap_embedder: Callable[[Embedder], ChipEmbedder] | None = None) -> None:
        self.detector = FaceDetector()
        self.landmarks = LandmarkPredictor()
        network = Embedder(flip=flip)
        self._model_id = network.model_id
        self.embedder: ChipEmbedder = wrap_embedder(network) if wrap_embedder else network

    @property
    def model_id(self) -> str:
        """Id of the embedding model, recorded with every stored embedding."""
        return self._model_id

    def faces(self, image: ImageInput, *, upsample: int = 0) -> list[Face]:
        """Every face in ``image``, largest first (see ``gallery.faces``)."""
        return self.faces_many([image], upsample=upsample)[0]

    def faces_many(self, images: Iterable[ImageInput], *, upsample: int = 0) -> list[list[Face]]:
        """The faces of each photo, largest first, embedding the chips of all photos in shared batches.

        Photos are taken from ``images`` one at a time and only their chips are kept, so a
        generator of photos bounds memory. Batching the embedder across photos is what makes
        bulk enrolment fast: one face per photo would otherwise run the network at batch 1.
        """
        located_per_photo: list[list[tuple[Box, float, np.ndarray]]] = []
        chips: list[np.ndarray] = []
        for image in images:
            rgb = load_rgb(image)
            located = self.locate(rgb, upsample=upsample)
            points = self.landmarks.predict_many(rgb, [box for box, _ in located]) if located else np.empty((0, 5, 2))
            # Landmarks come from the detector's whole box (what the shape predictor was trained on);
            # the box reported is clipped to the photo.
            shape = rgb.shape
            located_per_photo.append(
                [(clip_box(box, shape), score, points[i]) for i, (box, score) in enumerate(located)]
            )
            chips += [extract_chip(rgb, p) for p in points]
        chip_array = np.stack(chips) if chips else np.empty((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        embeddings = self.embedder.embed(chip_array)
        results: list[list[Face]] = []
        next_chip = 0
        for faces_located in located_per_photo:
            found = []
            for box, score, landmarks in faces_located:
                found.append(
                    Face(
                        box=box,
                        score=score,
                        landmarks=landmarks,
                        embedding=embeddings[next_chip],
                        chip=chip_array[next_chip],
                    )
                )
                next_chip += 1
            # Largest first: the person closest to the camera is the one at the door.
            results.append(sorted(found, key=lambda f: f.width * f.height, reverse=True))
        return results

    def look_closer(self, image: ImageInput, shape: tuple[int, ...]) -> list[Face]:
        """The faces of a photo in which none was found, detected again on it upsampled once.

        The detector needs ~80 px faces; looking closer finds smaller ones, so that a caller can
        say "too small" (which the user can fix) rather than "no face". Photos over
        ``LOOK_CLOSER_MAX_PIXELS`` (``shape`` is the decoded photo's) are not looked at again.
        """
        if shape[0] * shape[1] > LOOK_CLOSER_MAX_PIXELS:
            return []
        return self.faces(image, upsample=1)

    def locate(self, rgb: np.ndarray, *, upsample: int = 0) -> list[tuple[Box, float]]:
        """Boxes (in ``rgb``'s pixels) and scores, detecting on a downscaled copy of a huge photo."""
        upsample = whole_number("upsample", upsample, minimum=0, maximum=MAX_UPSAMPLE)
        height, width = rgb.shape[:2]
        scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
        if scale == 1.0:
            return [(d.box, d.score) for d in self.detector.detect(rgb, upsample=upsample)]
        small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(small_size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        sx, sy = width / small_size[0], height / small_size[1]
        located = []
        for d in self.detector.detect(small, upsample=upsample):
            left, top, right, bottom = d.box
            box = (
                round(left * sx),
                round(top * sy),
                round((right + 1) * sx) - 1,
                round((bottom + 1) * sy) - 1,
            )
            located.append((box, d.score))
        return located


def clip_box(box: Box, shape: tuple[int, ...]) -> Box:
    """``box`` (inclusive corners) clipped to a photo of ``shape`` (height, width, ...).

    dlib reports a face cut by the photo's edge with corners outside the photo (``-84``); an
    integrator drawing boxes on a camera frame, or cropping with ``frame[top:bottom]``, gets
    nonsense from a negative index (numpy counts it from the other end). The visible part of
    the face is what the box must say.
    """
    height, width = shape[:2]
    left, top, right, bottom = box
    return (
        min(max(left, 0), width - 1),
        min(max(top, 0), height - 1),
        min(max(right, 0), width - 1),
        min(max(bottom, 0), height - 1),
    )


_pipeline: FacePipeline | None = None
_pipeline_lock = threading.Lock()


def default_pipeline() -> FacePipeline:
    """The process-wide pipeline (models load lazily, once)."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            _pipeline = FacePipeline()
        return _pipeline


def faces(image: ImageInput, *, upsample: int = 0) -> list[Face]:
    """Every face in ``image``, largest first; an empty list when there is none.

    Args:
        image: a path, bytes, a PIL image or an HxWx3 uint8 RGB array.
        upsample: how many times to double the photo before detecting, 0 to 3 (finds faces
            smaller than ~80 px, at about 4x the cost per step).

    Raises:
        ImageError: the photo cannot be used. InvalidArgument: ``upsample`` out of range.
    """
    upsample = whole_number("upsample", upsample, minimum=0, maximum=MAX_UPSAMPLE)
    return default_pipeline().faces(image, upsample=upsample)
