"""dlib's 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``) as flat numpy arrays.

The file holds a cascade of regression-tree forests (Kazemi & Sullivan 2014), written by
``dlib::serialize(shape_predictor)``: an int version, the initial shape (a float column
matrix), the forests (per cascade, per tree: the splits ``idx1, idx2, thresh`` and the
leaf vectors), then per cascade the anchor landmark and offset of each feature pixel.
Every value in the file is one of dlib's variable-length integers (a float is a mantissa
and an exponent), so the whole file is decoded into integers at once (``IntegerStream``).

The forests are stored as dense arrays so that a whole cascade evaluates at once:
``split_idx1/split_idx2/split_thresh`` are ``(cascades, trees, 15)`` (nodes in dlib's
breadth-first order, children of node i at 2i+1 and 2i+2) and ``leaf_values`` is
``(cascades, trees, 16, 2*parts)``. The cascade itself is evaluated in
``gallery.vision.landmarks``; ``pretrained`` caches and loads these arrays.
"""

from __future__ import annotations

import numpy as np

from gallery.errors import DlibFormatError
from gallery.models.dlib_serialize import IntegerStream, reals_from_pairs
from gallery.models.files import LANDMARKS_FILE, model_path

WEIGHTS_NAME = "shape_predictor_5_face_landmarks"
# SHA-256 of the safetensors file written from convert_landmark_model()'s arrays.
LANDMARKS_SHA256 = "a4e9c935741bb7f0ac7be10e45aeb25cae627a04a880e578ec8e7ec77835f59c"

NUM_PARTS = 5
TREE_DEPTH = 4
NUM_SPLITS = 2**TREE_DEPTH - 1
NUM_LEAVES = 2**TREE_DEPTH
_FILE_VERSION = 1


def _check_all_equal(values: np.ndarray, expected: int, what: str) -> None:
    if not (values == expected).all():
        raise DlibFormatError(f"{what}: expected {expected} everywhere, found {np.unique(values)[:5]}")


def _read_matrix_shape(stream: IntegerStream, rows: int) -> None:
    """A column matrix header: dlib writes the dimensions negated (newer format) or plain."""
    nr, nc = abs(stream.integer()), abs(stream.integer())
    if (nr, nc) != (rows, 1):
        raise DlibFormatError(f"expected a {rows}x1 matrix, found {nr}x{nc}")


def parse_shape_predictor(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of a serialized ``dlib::shape_predictor`` with depth-4 trees (see module doc)."""
    stream = IntegerStream(data)
    stream.expect_integer(_FILE_VERSION, "shape predictor version")

    _read_matrix_shape(stream, 2 * NUM_PARTS)
    values_per_leaf = 2 * NUM_PARTS
    initial_shape = reals_from_pairs(stream.take(2 * values_per_leaf).reshape(-1, 2))

    num_cascades = stream.integer()
    num_trees = stream.integer()
    # Per tree: splits (count, then idx1, idx2, mantissa, exponent each), then leaves
    # (count, then per leaf a matrix header and the mantissa/exponent pairs).
    splits_len = 1 + 4 * NUM_SPLITS
    leaf_len = 2 + 2 * values_per_leaf
    tree_len = splits_len + 1 + NUM_LEAVES * leaf_len
    split_idx1, split_idx2, split_thresh, leaf_values = [], [], [], []
    for cascade in range(num_cascades):
        if cascade:
            stream.expect_integer(num_trees, "trees per cascade")
        trees = stream.take(num_trees * tree_len).reshape(num_trees, tree_len)
        _check_all_equal(trees[:, 0], NUM_SPLITS, "splits per tree")
        splits = trees[:, 1:splits_len].reshape(num_trees, NUM_SPLITS, 4)
        split_idx1.append(splits[..., 0])
        split_idx2.append(splits[..., 1])
        split_thresh.append(reals_from_pairs(splits[..., 2:4]))
        _check_all_equal(trees[:, splits_len], NUM_LEAVES, "leaves per tree")
        leaves = trees[:, splits_len + 1 :].reshape(num_trees, NUM_LEAVES, leaf_len)
        _check_all_equal(np.abs(leaves[..., 0]), values_per_leaf, "leaf rows")
        _check_all_equal(np.abs(leaves[..., 1]), 1, "leaf columns")
        leaf_values.append(reals_from_pairs(leaves[..., 2:].reshape(num_trees, NUM_LEAVES, values_per_leaf, 2)))

    stream.expect_integer(num_cascades, "anchor lists")
    num_pixels = stream.integer()
    anchor_idx = []
    for cascade in range(num_cascades):
        if cascade:
            stream.expect_integer(num_pixels, "feature pixels per cascade")
        anchor_idx.append(stream.take(num_pixels))

    stream.expect_integer(num_cascades, "delta lists")
    deltas = []
    for _ in range(num_cascades):
        stream.expect_integer(num_pixels, "feature pixels per cascade")
        deltas.append(reals_from_pairs(stream.take(4 * num_pixels).reshape(num_pixels, 2, 2)))
    if stream.remaining:
        raise DlibFormatError(f"{stream.remaining} integers left after the shape predictor")

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
