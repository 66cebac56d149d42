"""dlib's file format: the two integer readers agree, and the network readers refuse a damaged file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gallery.errors import DlibFormatError
from gallery.models import mmod_dlib, resnet_dlib
from gallery.models.dlib_serialize import DlibReader, IntegerStream, reals_from_pairs
from gallery.models.files import model_path

INTEGERS = [0, 1, -1, 127, 255, 256, -70_000, 2**40, -(2**62)]


def _dlib_int(value: int) -> bytes:
    magnitude = abs(value)
    payload = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
    return bytes([(0x80 if value < 0 else 0) | len(payload)]) + payload


def test_sequential_and_vectorised_readers_decode_the_same_integers() -> None:
    data = b"".join(_dlib_int(v) for v in INTEGERS)
    reader = DlibReader(data)
    assert [reader.integer() for _ in INTEGERS] == INTEGERS
    assert reader.at_end()
    stream = IntegerStream(data)
    assert stream.take(len(INTEGERS)).tolist() == INTEGERS
    assert stream.remaining == 0


def test_a_float_is_its_mantissa_times_two_to_its_exponent() -> None:
    pairs = [(3, -2), (-5, 3), (0, 0)]
    reader = DlibReader(b"".join(_dlib_int(m) + _dlib_int(e) for m, e in pairs))
    assert [reader.real() for _ in pairs] == [0.75, -40.0, 0.0]
    assert reals_from_pairs(np.array(pairs)).tolist() == [0.75, -40.0, 0.0]


def test_readers_refuse_to_read_past_the_end() -> None:
    with pytest.raises(DlibFormatError):
        DlibReader(_dlib_int(70_000)[:-1]).integer()
    with pytest.raises(DlibFormatError):
        IntegerStream(_dlib_int(70_000)[:-1])
    with pytest.raises(DlibFormatError):
        IntegerStream(_dlib_int(1)).take(2)


@pytest.mark.parametrize(
    ("module", "filename", "convert"),
    [
        (resnet_dlib, resnet_dlib.RECOGNITION_FILE, resnet_dlib.convert_recognition_model),
        (mmod_dlib, mmod_dlib.DETECTOR_FILE, mmod_dlib.convert_detector_model),
    ],
    ids=["recognition", "detector"],
)
def test_network_readers_refuse_a_truncated_or_padded_file(
    module: object,
    filename: str,
    convert: Callable[[], dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = model_path(filename).read_bytes()
    damaged = tmp_path / filename
    monkeypatch.setattr(module, "model_path", lambda _name: damaged)
    for variant in (data[:-1], data + _dlib_int(0)):
        damaged.write_bytes(variant)
        with pytest.raises(DlibFormatError):
            convert()
