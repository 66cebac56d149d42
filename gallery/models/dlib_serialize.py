"""Reader for dlib's binary serialization format (dlib/serialize.h).

dlib writes integers as a control byte followed by little-endian magnitude bytes,
floats as an integer mantissa and exponent, and DNN tensors as a short header
followed by raw float32. Only reading is needed: we convert dlib's files once
and cache the result (see ``gallery.models.weights``).
"""

from __future__ import annotations

import numpy as np

from gallery.errors import DlibFormatError


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

    def int(self) -> int:
        """An integer: control byte (low nibble = byte count, 0x80 = negative), then magnitude."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DlibFormatError(f"integer of {size} bytes at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        """A float or double: value = mantissa * 2**exponent (dlib's float_details)."""
        mantissa = self.int()
        exponent = self.int()
        # dlib marks inf/nan with exponents at the extreme of int16; model files never hold them.
        if exponent in (32767, 32766, 32765):
            raise DlibFormatError(f"non-finite float in model file at byte {self.pos}")
        return float(mantissa) * 2.0**exponent

    def bool(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        length = self.int()
        return self._take(length).decode("utf-8")

    def expect_string(self, expected: str) -> None:
        found = self.string()
        if found != expected:
            raise DlibFormatError(f"expected {expected!r} but found {found!r} at byte {self.pos}")

    def expect_int(self, expected: int, what: str) -> None:
        found = self.int()
        if found != expected:
            raise DlibFormatError(f"{what}: expected {expected} but found {found} at byte {self.pos}")

    def floats(self, count: int) -> np.ndarray:
        """``count`` floats each in dlib's mantissa/exponent encoding (used outside DNN tensors)."""
        return np.array([self.float() for _ in range(count)], dtype=np.float32)

    def raw_float32(self, count: int) -> np.ndarray:
        """``count`` raw little-endian float32 values, read in bulk."""
        return np.frombuffer(self._take(4 * count), dtype="<f4").copy()

    def tensor(self) -> np.ndarray:
        """A DNN tensor (version 2): num_samples, k, nr, nc, then raw float32 data."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return self.raw_float32(count).reshape(shape)
