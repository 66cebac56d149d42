"""5-point face landmarks, identical to dlib's ``shape_predictor`` on the same image and box.

dlib refines a mean shape through 15 cascades of 500 depth-4 regression trees. Each
cascade reads 800 pixel intensities at offsets anchored to the current landmarks, walks
every tree on differences of two of them, and adds the 500 leaf vectors to the shape.
We evaluate a cascade at once (all trees, all boxes) while keeping dlib's arithmetic:
float32 shape updates added tree by tree, the 2x2 shape transform applied element-wise
in float32, the box transform dlib gets from its pseudo-inverse, and pixel positions
rounded with floor(x + 0.5) -- pixels sit on .5 ties often enough that any shortcut
there moves landmarks by pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from gallery.models.shape_predictor import NUM_LEAVES, NUM_PARTS, NUM_SPLITS, TREE_DEPTH, load_landmark_model
from gallery.vision.dlib_linalg import affine_pinv

Box = Sequence[int]

# dlib maps the unit square onto the box with find_affine_transform from these corners.
_UNIT_CORNERS = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))


def _leaf_lookup() -> np.ndarray:
    """Leaf reached for every pattern of the 15 split outcomes (bit i: split i went left)."""
    codes = np.arange(2**NUM_SPLITS, dtype=np.int64)
    node = np.zeros_like(codes)
    for _ in range(TREE_DEPTH):
        went_left = (codes >> node) & 1
        node = 2 * node + 2 - went_left
    return (node - NUM_SPLITS).astype(np.intp)


def _box_transforms(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's ``unnormalizing_tform`` per box: ``(m, b)`` mapping [0,1]^2 onto the box.

    dlib computes ``Q pinv(P)`` rather than the exact (right-left, bottom-top) scaling;
    its pseudo-inverse is off in the last bits, and those bits decide .5 rounding ties.
    """
    pinv = np.array(affine_pinv(_UNIT_CORNERS))
    left, top, right, bottom = (boxes[:, k].astype(np.float32).astype(np.float64) for k in range(4))
    # Rows of Q: the box corners (tl, tr, br) as x and y; sums run left to right like dlib's.
    q = (np.stack([left, right, right], axis=1), np.stack([top, top, bottom], axis=1))
    full = np.empty((len(boxes), 2, 3))
    for i in range(2):
        for j in range(3):
            full[:, i, j] = q[i][:, 0] * pinv[0][j] + q[i][:, 1] * pinv[1][j] + q[i][:, 2] * pinv[2][j]
    return full[:, :, :2], full[:, :, 2]


def _to_image(m: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map normalized float32 points to image pixels, rounded as dlib rounds (floor(v + .5))."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    image_x = m[:, 0, 0, None] * x64 + m[:, 0, 1, None] * y64 + b[:, 0, None]
    image_y = m[:, 1, 0, None] * x64 + m[:, 1, 1, None] * y64 + b[:, 1, None]
    return np.floor(image_x + 0.5), np.floor(image_y + 0.5)


def _shape_transforms(reference: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """The 2x2 part of dlib's similarity fit from ``reference`` to each shape, as float32.

    In 2-D, Umeyama's c*R reduces to [[a+d, b-c], [c-b, a+d]] / var(from) with cov =
    [[a, b], [c, d]]; dlib's SVD route differs only far below float32 precision.
    """
    from_centered = reference - reference.mean(axis=0)
    to_centered = shapes - shapes.mean(axis=1, keepdims=True)
    count = reference.shape[0]
    sigma_from = (from_centered**2).sum() / count
    cov = np.einsum("npi,pj->nij", to_centered, from_centered) / count
    diagonal = (cov[:, 0, 0] + cov[:, 1, 1]) / sigma_from
    skew = (cov[:, 1, 0] - cov[:, 0, 1]) / sigma_from
    return np.stack([np.stack([diagonal, -skew], axis=1), np.stack([skew, diagonal], axis=1)], axis=1).astype(
        np.float32
    )


class LandmarkPredictor:
    """dlib's 5-point shape predictor; the model loads on first use and is safe to share."""

    def __init__(self, model: dict[str, np.ndarray] | None = None) -> None:
        self._model = model
        self._prepared: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._prepared is None:
            with self._lock:
                if self._prepared is None:
                    self._prepared = self._prepare(self._model if self._model is not None else load_landmark_model())
        return self._prepared

    @staticmethod
    def _prepare(model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        num_cascades, num_trees = model["split_idx1"].shape[:2]
        tree_base = (np.arange(num_trees) * NUM_LEAVES)[None, :]
        return {
            "initial_shape": model["initial_shape"].reshape(NUM_PARTS, 2),
            "split_idx1": model["split_idx1"].reshape(num_cascades, -1).astype(np.intp),
            "split_idx2": model["split_idx2"].reshape(num_cascades, -1).astype(np.intp),
            "split_thresh": model["split_thresh"].reshape(num_cascades, num_trees, NUM_SPLITS),
            "leaf_values": model["leaf_values"].reshape(num_cascades, num_trees * NUM_LEAVES, 2 * NUM_PARTS),
            "anchor_idx": model["anchor_idx"].astype(np.intp),
            "deltas": model["deltas"],
            "tree_base": tree_base,
            "leaf_lookup": _leaf_lookup(),
        }

    def predict(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks of the face in ``box``.

        Args:
            image: HxWx3 uint8 RGB image.
            box: (left, top, right, bottom) in dlib's rectangle convention (right and bottom
                inclusive), e.g. a detection from the face detector.

        Returns:
            (5, 2) int64 array of (x, y) pixel coordinates, as dlib's ``part(i)`` reports them.
        """
        return self.predict_many(image, [box])[0]

    def predict_many(self, image: np.ndarray, boxes: Sequence[Box] | np.ndarray) -> np.ndarray:
        """Landmarks for several boxes of one image, evaluated together.

        Args:
            image: HxWx3 uint8 RGB image.
            boxes: (n, 4) boxes (left, top, right, bottom), dlib's inclusive convention.

        Returns:
            (n, 5, 2) int64 array of (x, y) pixel coordinates.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} array of shape {image.shape}")
        box_array = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        if len(box_array) == 0:
            return np.zeros((0, NUM_PARTS, 2), dtype=np.int64)
        model = self._arrays()
        height, width = image.shape[:2]
        pixels = np.ascontiguousarray(image).reshape(-1)
        box_m, box_b = _box_transforms(box_array)
        reference = model["initial_shape"]
        reference64 = reference.astype(np.float64)
        num_boxes = len(box_array)
        shape = np.broadcast_to(reference.reshape(1, -1), (num_boxes, 2 * NUM_PARTS)).copy()

        for cascade in range(len(model["deltas"])):
            tform = _shape_transforms(reference64, shape.reshape(num_boxes, NUM_PARTS, 2).astype(np.float64))
            anchors = model["anchor_idx"][cascade]
            delta_x, delta_y = model["deltas"][cascade, :, 0], model["deltas"][cascade, :, 1]
            # float32 throughout, in dlib's order: (m00*dx + m01*dy) + anchor.
            x = tform[:, 0, 0, None] * delta_x + tform[:, 0, 1, None] * delta_y + shape[:, 2 * anchors]
            y = tform[:, 1, 0, None] * delta_x + tform[:, 1, 1, None] * delta_y + shape[:, 2 * anchors + 1]
            column, row = _to_image(box_m, box_b, x, y)
            inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
            offset = 3 * np.where(inside, row * width + column, 0).astype(np.intp)
            intensity = (
                pixels[offset].astype(np.uint16) + pixels[offset + 1] + pixels[offset + 2]
            ) // 3
            features = np.where(inside, intensity, 0).astype(np.float32)

            went_left = (
                features[:, model["split_idx1"][cascade]] - features[:, model["split_idx2"][cascade]]
            ).reshape(num_boxes, -1, NUM_SPLITS) > model["split_thresh"][cascade]
            codes = np.packbits(went_left, axis=-1, bitorder="little").view("<u2")[..., 0]
            leaves = model["leaf_lookup"][codes] + model["tree_base"]
            updates = model["leaf_values"][cascade][leaves]
            # dlib adds the trees' outputs one after another in float32; accumulate keeps that order.
            shape = np.add.accumulate(np.concatenate([shape[:, None, :], updates], axis=1), axis=1)[:, -1]

        column, row = _to_image(box_m, box_b, shape[:, 0::2], shape[:, 1::2])
        return np.stack([column, row], axis=-1).astype(np.int64)
