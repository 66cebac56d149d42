"""Reader for dlib's binary serialization format (dlib/serialize.h).

dlib writes integers as a control byte followed by little-endian magnitude bytes,
floats as an integer mantissa and exponent, and DNN tensors as a short header
followed by raw float32. Only reading is needed: we convert dlib's files once
and cache the result (see ``gallery.models.weights``).

Two readers share the encoding: ``DlibReader`` walks a file value by value (the DNN files,
whose bulk is raw float32 tensors), and ``IntegerStream`` decodes a file that is nothing
but integers in one vectorised pass (the shape predictor: half a million floats, each a
mantissa/exponent pair, would take seconds one call at a time).
"""

from __future__ import annotations

import numpy as np

from gallery.errors import DlibFormatError

_MAX_INTEGER_BYTES = 8
# dlib marks inf/nan with exponents at the extreme of int16; model files never hold them.
_NON_FINITE_EXPONENTS = (32767, 32766, 32765)


class DlibReader:
    """Sequential reader over the bytes of one dlib-serialized file."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def _take(self, count: int) -> bytes:
        if count > self.remaining:
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (wanted {count} more)")
        chunk = self._data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        """An integer: control byte (low nibble = byte count, 0x80 = negative), then magnitude."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size > _MAX_INTEGER_BYTES:
            raise DlibFormatError(f"integer of {size} bytes at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def real(self) -> float:
        """A float or double: value = mantissa * 2**exponent (dlib's float_details)."""
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _NON_FINITE_EXPONENTS:
            raise DlibFormatError(f"non-finite float in model file at byte {self.pos}")
        return float(mantissa) * 2.0**exponent

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        length = self.integer()
        return self._take(length).decode("utf-8")

    def expect_string(self, expected: str) -> None:
        found = self.string()
        if found != expected:
            raise DlibFormatError(f"expected {expected!r} but found {found!r} at byte {self.pos}")

    def expect_integer(self, expected: int, what: str) -> None:
        found = self.integer()
        if found != expected:
            raise DlibFormatError(f"{what}: expected {expected} but found {found} at byte {self.pos}")

    def tensor(self) -> np.ndarray:
        """A DNN tensor (version 2): num_samples, k, nr, nc, then raw little-endian float32 in bulk."""
        self.expect_integer(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).copy()


def _integer_starts(data: bytes) -> np.ndarray:
    """Offsets of the consecutive dlib integers that make up ``data``.

    Each integer's length is in its control byte, so this walk is inherently sequential;
    it is the only per-value Python loop in decoding.
    """
    step = [1 + (control & 0x0F) for control in range(256)]
    starts: list[int] = []
    append = starts.append
    pos, end = 0, len(data)
    while pos < end:
        append(pos)
        pos += step[data[pos]]
    if pos != end:
        raise DlibFormatError(f"last integer runs past the end of the file ({pos} > {end})")
    return np.array(starts, dtype=np.int64)


def decode_integers(data: bytes) -> np.ndarray:
    """Every value of ``data``, a file made only of dlib integers, as int64 (vectorised)."""
    starts = _integer_starts(data)
    raw = np.frombuffer(data + bytes(_MAX_INTEGER_BYTES), dtype=np.uint8)
    control = raw[starts]
    sizes = control & 0x0F
    if (sizes > _MAX_INTEGER_BYTES).any() or (control & 0x70).any():
        raise DlibFormatError("malformed integer control byte")
    width = int(sizes.max())
    # Gather each magnitude's bytes into an 8-byte little-endian row, zeroing bytes that
    # belong to the next integer, then read the rows as uint64.
    magnitude_bytes = np.zeros((len(starts), _MAX_INTEGER_BYTES), dtype=np.uint8)
    offsets = np.arange(width)
    magnitude_bytes[:, :width] = raw[starts[:, None] + 1 + offsets]
    magnitude_bytes[:, :width] *= offsets < sizes[:, None]
    magnitude = magnitude_bytes.view("<u8")[:, 0]
    if (magnitude >> np.uint64(63)).any():
        raise DlibFormatError("integer too large for int64")
    values = magnitude.astype(np.int64)
    return np.where(control & 0x80, -values, values)


def reals_from_pairs(pairs: np.ndarray) -> np.ndarray:
    """float32 values of ``(..., 2)`` mantissa/exponent pairs (exact when mantissas fit in 24 bits)."""
    mantissa, exponent = pairs[..., 0], pairs[..., 1]
    if (np.abs(exponent) >= min(_NON_FINITE_EXPONENTS)).any():
        raise DlibFormatError("non-finite float in model file")
    return np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32)).astype(np.float32)


class IntegerStream:
    """Structured reads over a file's decoded integers, by slices instead of per-value calls."""

    def __init__(self, data: bytes) -> None:
        self._values = decode_integers(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._values) - self.pos

    def take(self, count: int) -> np.ndarray:
        if count > self.remaining:
            raise DlibFormatError(f"unexpected end of file at integer {self.pos} (wanted {count} more)")
        chunk = self._values[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        return int(self.take(1)[0])

    def expect_integer(self, expected: int, what: str) -> None:
        found = self.integer()
        if found != expected:
            raise DlibFormatError(f"{what}: expected {expected} but found {found}")
