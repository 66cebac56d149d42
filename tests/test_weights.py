"""The converted-weights cache of all three models: verified by SHA-256 on every load, rebuilt when damaged."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gallery.errors import WeightsMismatch
from gallery.models import mmod_dlib, resnet_dlib, shape_predictor, weights

MODELS = {
    "detector": (mmod_dlib.DETECTOR_NAME, mmod_dlib.DETECTOR_SHA256, mmod_dlib.convert_detector_model),
    "landmarks": (
        shape_predictor.WEIGHTS_NAME,
        shape_predictor.LANDMARKS_SHA256,
        shape_predictor.convert_landmark_model,
    ),
    "recognition": (
        resnet_dlib.WEIGHTS_NAME,
        resnet_dlib.RECOGNITION_SHA256,
        resnet_dlib.convert_recognition_model,
    ),
}


def _flip_a_weight(data: bytes) -> bytes:
    """One bit flipped in the last tensor: still a well-formed safetensors file, silently wrong weights."""
    damaged = bytearray(data)
    damaged[-3] ^= 0x01
    return bytes(damaged)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "one flipped bit": _flip_a_weight,
    "truncated": lambda data: data[: len(data) // 2],
    "not safetensors at all": lambda data: b"\x80\x04 a pickle, maybe, that must never be loaded" * 64,
    "empty": lambda data: b"",
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("model", list(MODELS))
def test_a_damaged_cache_is_detected_and_rebuilt_for_every_model(model: str, cache: Path) -> None:
    name, sha256, convert = MODELS[model]
    fresh = weights.load_converted(name, sha256, convert)
    cached = cache / f"{name}.safetensors"
    good = cached.read_bytes()
    assert hashlib.sha256(good).hexdigest() == sha256
    for how, damage in DAMAGE.items():
        cached.write_bytes(damage(good))
        conversions: list[int] = []

        def counting_convert(conversions: list[int] = conversions) -> dict[str, np.ndarray]:
            conversions.append(1)
            return convert()

        loaded = weights.load_converted(name, sha256, counting_convert)
        assert conversions == [1], f"{how}: the damaged cache was used"
        assert cached.read_bytes() == good, f"{how}: the cache was not rebuilt"
        assert loaded.keys() == fresh.keys() and all(np.array_equal(loaded[k], fresh[k]) for k in fresh)
    # An intact cache is used as is: no conversion.
    weights.load_converted(name, sha256, lambda: pytest.fail("converted although the cache is intact"))
    assert sorted(p.name for p in cache.iterdir()) == [cached.name]  # no temporary files left


def test_a_conversion_that_does_not_reproduce_the_recorded_checksum_is_refused(cache: Path) -> None:
    name, sha256, convert = MODELS["detector"]

    def drifted() -> dict[str, np.ndarray]:  # e.g. another version of the model file
        arrays = convert()
        first = next(iter(arrays))
        arrays[first] = arrays[first] + 1
        return arrays

    with pytest.raises(WeightsMismatch, match=sha256):
        weights.load_converted(name, sha256, drifted)
    assert list(cache.iterdir()) == []  # nothing unverified is cached
