"""dlib's 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``) as flat numpy arrays.

The file holds a cascade of regression-tree forests (Kazemi & Sullivan 2014), written by
``dlib::serialize(shape_predictor)``: an int version, the initial shape (a float column
matrix), the forests (per cascade, per tree: the splits ``idx1, idx2, thresh`` and the
leaf vectors), then per cascade the anchor landmark and offset of each feature pixel.
Every value in the file is one of dlib's variable-length integers (a float is a mantissa
and an exponent), so we cut the whole file into integers once and decode them in bulk.

The forests are stored as dense arrays so that a whole cascade evaluates at once:
``split_idx1/split_idx2/split_thresh`` are ``(cascades, trees, 15)`` (nodes in dlib's
breadth-first order, children of node i at 2i+1 and 2i+2) and ``leaf_values`` is
``(cascades, trees, 16, 2*parts)``.
"""

from __future__ import annotations

import numpy as np

from gallery.errors import DlibFormatError
from gallery.models.files import LANDMARKS_FILE, model_path
from gallery.models.weights import load_converted

WEIGHTS_NAME = "shape_predictor_5_face_landmarks"
# SHA-256 of the safetensors file written from convert_landmark_model()'s arrays.
LANDMARKS_SHA256 = "a4e9c935741bb7f0ac7be10e45aeb25cae627a04a880e578ec8e7ec77835f59c"

NUM_PARTS = 5
TREE_DEPTH = 4
NUM_SPLITS = 2**TREE_DEPTH - 1
NUM_LEAVES = 2**TREE_DEPTH
_FILE_VERSION = 1
_MAX_INT_BYTES = 8


def _integer_starts(data: bytes) -> np.ndarray:
    """Offsets of the consecutive dlib integers that make up ``data``.

    Each integer's length is in its control byte, so this walk is inherently sequential;
    it is the only per-value Python loop in the conversion.
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


def _decode_integers(data: bytes, starts: np.ndarray) -> np.ndarray:
    """Values of the integers beginning at ``starts`` (vectorised over all of them)."""
    raw = np.frombuffer(data + bytes(_MAX_INT_BYTES), dtype=np.uint8)
    control = raw[starts]
    sizes = control & 0x0F
    if (sizes > _MAX_INT_BYTES).any() or (control & 0x70).any():
        raise DlibFormatError("malformed integer control byte (not a shape predictor file?)")
    width = int(sizes.max())
    # Gather each magnitude's bytes into an 8-byte little-endian row, zeroing bytes that
    # belong to the next integer, then read the rows as uint64.
    magnitude_bytes = np.zeros((len(starts), _MAX_INT_BYTES), dtype=np.uint8)
    offsets = np.arange(width)
    magnitude_bytes[:, :width] = raw[starts[:, None] + 1 + offsets]
    magnitude_bytes[:, :width] *= offsets < sizes[:, None]
    magnitude = magnitude_bytes.view("<u8")[:, 0]
    if (magnitude >> np.uint64(63)).any():
        raise DlibFormatError("integer too large for a shape predictor file")
    values = magnitude.astype(np.int64)
    return np.where(control & 0x80, -values, values)


class _IntegerStream:
    """Structured reads over the decoded integers, with slices instead of per-value calls."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values
        self.pos = 0

    def take(self, count: int) -> np.ndarray:
        if self.pos + count > len(self._values):
            raise DlibFormatError("unexpected end of shape predictor file")
        chunk = self._values[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        return int(self.take(1)[0])

    def expect(self, expected: int, what: str) -> None:
        found = self.int()
        if found != expected:
            raise DlibFormatError(f"{what}: expected {expected} but found {found}")


def _as_float32(pairs: np.ndarray) -> np.ndarray:
    """dlib floats from ``(..., 2)`` mantissa/exponent pairs (exact: mantissas fit in 24 bits)."""
    mantissa, exponent = pairs[..., 0], pairs[..., 1]
    if (np.abs(exponent) >= 32765).any():
        raise DlibFormatError("non-finite float in shape predictor file")
    return np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32)).astype(np.float32)


def _check_all_equal(values: np.ndarray, expected: int, what: str) -> None:
    if not (values == expected).all():
        raise DlibFormatError(f"{what}: expected {expected} everywhere, found {np.unique(values)[:5]}")


def _read_matrix_shape(stream: _IntegerStream, rows: int) -> None:
    """A column matrix header: dlib writes the dimensions negated (newer format) or plain."""
    nr, nc = abs(stream.int()), abs(stream.int())
    if (nr, nc) != (rows, 1):
        raise DlibFormatError(f"expected a {rows}x1 matrix, found {nr}x{nc}")


def parse_shape_predictor(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of a serialized ``dlib::shape_predictor`` with depth-4 trees (see module doc)."""
    stream = _IntegerStream(_decode_integers(data, _integer_starts(data)))
    stream.expect(_FILE_VERSION, "shape predictor version")

    _read_matrix_shape(stream, 2 * NUM_PARTS)
    values_per_leaf = 2 * NUM_PARTS
    initial_shape = _as_float32(stream.take(2 * values_per_leaf).reshape(-1, 2))

    num_cascades = stream.int()
    num_trees = stream.int()
    # Per tree: splits (count, then idx1, idx2, mantissa, exponent each), then leaves
    # (count, then per leaf a matrix header and the mantissa/exponent pairs).
    splits_len = 1 + 4 * NUM_SPLITS
    leaf_len = 2 + 2 * values_per_leaf
    tree_len = splits_len + 1 + NUM_LEAVES * leaf_len
    split_idx1, split_idx2, split_thresh, leaf_values = [], [], [], []
    for cascade in range(num_cascades):
        if cascade:
            stream.expect(num_trees, "trees per cascade")
        trees = stream.take(num_trees * tree_len).reshape(num_trees, tree_len)
        _check_all_equal(trees[:, 0], NUM_SPLITS, "splits per tree")
        splits = trees[:, 1:splits_len].reshape(num_trees, NUM_SPLITS, 4)
        split_idx1.append(splits[..., 0])
        split_idx2.append(splits[..., 1])
        split_thresh.append(_as_float32(splits[..., 2:4]))
        _check_all_equal(trees[:, splits_len], NUM_LEAVES, "leaves per tree")
        leaves = trees[:, splits_len + 1 :].reshape(num_trees, NUM_LEAVES, leaf_len)
        _check_all_equal(np.abs(leaves[..., 0]), values_per_leaf, "leaf rows")
        _check_all_equal(np.abs(leaves[..., 1]), 1, "leaf columns")
        leaf_values.append(_as_float32(leaves[..., 2:].reshape(num_trees, NUM_LEAVES, values_per_leaf, 2)))

    stream.expect(num_cascades, "anchor lists")
    num_pixels = stream.int()
    anchor_idx = []
    for cascade in range(num_cascades):
        if cascade:
            stream.expect(num_pixels, "feature pixels per cascade")
        anchor_idx.append(stream.take(num_pixels))

    stream.expect(num_cascades, "delta lists")
    deltas = []
    for _ in range(num_cascades):
        stream.expect(num_pixels, "feature pixels per cascade")
        deltas.append(_as_float32(stream.take(4 * num_pixels).reshape(num_pixels, 2, 2)))
    if stream.pos != len(stream._values):
        raise DlibFormatError(f"{len(stream._values) - stream.pos} integers left after the shape predictor")

    arrays = {
        "initial_shape": initial_shape,
        "split_idx1": np.stack(split_idx1).astype(np.int32),
        "split_idx2": np.stack(split_idx2).astype(np.int32),
        "split_thresh": np.stack(split_thresh),
        "leaf_values": np.stack(leaf_values),
        "anchor_idx": np.stack(anchor_idx).astype(np.int32),
        "deltas": np.stack(deltas),
    }
    _check_indices(arrays)
    return arrays


def _check_indices(arrays: dict[str, np.ndarray]) -> None:
    num_pixels = arrays["deltas"].shape[1]
    for name in ("split_idx1", "split_idx2"):
        if arrays[name].min() < 0 or arrays[name].max() >= num_pixels:
            raise DlibFormatError(f"{name} points outside the {num_pixels} feature pixels")
    if arrays["anchor_idx"].min() < 0 or arrays["anchor_idx"].max() >= NUM_PARTS:
        raise DlibFormatError("a feature pixel is anchored to a landmark that does not exist")


def convert_landmark_model() -> dict[str, np.ndarray]:
    """Parse the installed ``shape_predictor_5_face_landmarks.dat`` into flat arrays."""
    return parse_shape_predictor(model_path(LANDMARKS_FILE).read_bytes())


def load_landmark_model() -> dict[str, np.ndarray]:
    """The shape predictor's arrays, from the verified cache (converted on first use)."""
    return load_converted(WEIGHTS_NAME, LANDMARKS_SHA256, convert_landmark_model)
