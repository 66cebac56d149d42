"""A deterministic stand-in for the face pipeline, for tests of the layers above it.

The real pipeline needs a face per person, and data/ holds a dozen people; tests of
storage, concurrency and crash safety need a hundred distinct ones, fast. ``FakePipeline``
finds one face covering the whole photo (none in a photo of a single colour) and derives its
embedding and chip from the decoded pixels, so the same photo always gives the same face
and different photos give faces about 1.4 apart (strangers, under dlib's 0.6 rule).

It still decodes every input with ``gallery.vision.image.load_rgb``, so bad photos fail
exactly as they do with the real pipeline. Never use it to test the embedder itself.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from gallery.vision.image import ImageInput, load_rgb
from gallery.vision.pipeline import Face

if TYPE_CHECKING:
    from gallery.vision.pipeline import ChipEmbedder, FacePipelineProtocol

FAKE_MODEL = "fake-embedder-v1"
PHOTO_SIDE = 96


def fake_photo(name: str, *, side: int = PHOTO_SIDE) -> bytes:
    """A PNG of noise seeded by ``name``: one distinct "person" per name."""
    pixels = _rng(name.encode()).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_embedding(rgb: np.ndarray) -> np.ndarray:
    """The unit-length float32 embedding the fake pipeline gives the photo ``rgb``."""
    vector = _rng(rgb.tobytes()).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def fake_embedding_of(name: str) -> np.ndarray:
    """The embedding of ``fake_photo(name)``."""
    return fake_embedding(load_rgb(fake_photo(name)))


def fake_chip(rgb: np.ndarray) -> np.ndarray:
    """The 150x150 chip the fake pipeline gives the photo ``rgb``: smooth noise that passes the quality gate."""
    coarse = _rng(b"chip" + rgb.tobytes()).integers(40, 216, (30, 30, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((150, 150), Image.Resampling.BILINEAR))


class FakeEmbedder:
    """Looks like ``gallery.vision.embedding.Embedder``: ``embed(chips)``, derived from the chips' pixels."""

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return np.stack([fake_embedding(chip) for chip in chips]) if len(chips) else np.empty((0, 128), np.float32)


class FakePipeline:
    """A ``gallery.vision.pipeline.FacePipelineProtocol``, as the real ``FacePipeline`` is (mypy checks both).

    Args:
        model_id: the embedding model id it claims (open a gallery "made by another model" with it).

    ``pipeline.give(photo, embedding)`` makes ``photo``'s face embed to ``embedding``: tests of
    the decision layer place faces exactly where they need them (near-ties, labelled sets).
    """

    def __init__(self, model_id: str = FAKE_MODEL) -> None:
        self.model_id: str = model_id
        self.embedder: FakeEmbedder = FakeEmbedder()
        self._given: dict[bytes, np.ndarray] = {}

    def give(self, photo: bytes, embedding: np.ndarray) -> bytes:
        """Make the face of ``photo`` (encoded bytes) embed to ``embedding``; returns ``photo``."""
        self._given[_pixels_key(load_rgb(photo))] = np.asarray(embedding, np.float32)
        return photo

    def faces(self, image: ImageInput, *, upsample: int = 0) -> list[Face]:
        """One face filling the photo, or none if the photo is a single colour."""
        rgb = load_rgb(image)
        if (rgb == rgb[0, 0]).all():
            return []
        height, width = rgb.shape[:2]
        landmarks = np.array([[0.7, 0.4], [0.6, 0.4], [0.3, 0.4], [0.4, 0.4], [0.5, 0.7]], dtype=np.float64) * [
            width,
            height,
        ]
        return [
            Face(
                box=(0, 0, width - 1, height - 1),
                score=1.0,
                landmarks=landmarks,
                embedding=self._given.get(_pixels_key(rgb), fake_embedding(rgb)),
                chip=fake_chip(rgb),
            )
        ]

    def look_closer(self, image: ImageInput, shape: tuple[int, ...]) -> list[Face]:
        return self.faces(image, upsample=1)

    def faces_many(self, images: Iterable[ImageInput], *, upsample: int = 0) -> list[list[Face]]:
        return [self.faces(image, upsample=upsample) for image in images]


if TYPE_CHECKING:  # mypy rejects these if the fakes drift from the interface the gallery calls
    _fake_embedder: ChipEmbedder = FakeEmbedder()
    _fake_pipeline: FacePipelineProtocol = FakePipeline()


def _pixels_key(rgb: np.ndarray) -> bytes:
    return hashlib.sha256(rgb.tobytes()).digest()


def _rng(data: bytes) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(data).digest()[:8], "little"))
