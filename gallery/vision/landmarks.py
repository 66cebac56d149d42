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
from dataclasses import dataclass

import numpy as np

from gallery.models.pretrained import load_landmark_model
from gallery.models.shape_predictor import NUM_LEAVES, NUM_PARTS, NUM_SPLITS, TREE_DEPTH
from gallery.types import Box
from gallery.vision.dlib_linalg import affine_pinv

_ONES3 = np.ones(3, dtype=np.float32)
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


def _box_transforms(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dlib's ``unnormalizing_tform`` per box, mapping [0,1]^2 onto the box.

    dlib computes ``Q pinv(P)`` rather than the exact (right-left, bottom-top) scaling, and
    its pseudo-inverse is off in the last bits; we reproduce it bit for bit, since those
    bits sit right where pixel positions round (on .5 ties whenever right-left is 2 mod 4).

    Returns:
        ``m[:, :, 0]``, ``m[:, :, 1]`` and ``b``, each (n, 2, 1), so that a point (x, y)
        maps to (m0 x + m1 y) + b, dlib's association.
    """
    pinv = affine_pinv(_UNIT_CORNERS)
    full = np.empty((len(boxes), 2, 3))
    for n, box in enumerate(boxes.tolist()):
        # dlib stores the corners as float32 points; exact for any realistic coordinate.
        left, top, right, bottom = (float(np.float32(v)) for v in box)
        # Rows of Q: the box corners tl, tr, br, as x and then as y.
        for i, q in enumerate(((left, right, right), (top, top, bottom))):
            for j in range(3):
                full[n, i, j] = q[0] * pinv[0][j] + q[1] * pinv[1][j] + q[2] * pinv[2][j]
    return full[:, :, 0, None], full[:, :, 1, None], full[:, :, 2, None]


def _to_image(box: tuple[np.ndarray, np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Map normalized float32 points (n, 2, k) to pixels, rounded as dlib rounds (floor(v + .5))."""
    m0, m1, b = box
    points64 = points.astype(np.float64)
    return np.floor(m0 * points64[:, None, 0] + m1 * points64[:, None, 1] + b + 0.5)


def _similarity_weights(reference: np.ndarray) -> np.ndarray:
    """(2*parts, 4) weights giving, from a flat shape, the similarity fit's (p, q, -q, p).

    dlib fits reference -> shape with Umeyama's method; in 2-D its c*R is exactly
    [[p, -q], [q, p]] with p = (cov00 + cov11) / var(reference) and q = (cov10 - cov01) /
    var(reference), both linear in the shape (the reference is centred, so the shape's own
    centring drops out). dlib's SVD route differs from this only far below float32
    precision, and dlib rounds the result to float32.
    """
    centred = reference.astype(np.float64) - reference.astype(np.float64).mean(axis=0)
    scaled = centred / (centred**2).sum()
    p_weights = np.stack([scaled[:, 0], scaled[:, 1]], axis=1).ravel()
    q_weights = np.stack([-scaled[:, 1], scaled[:, 0]], axis=1).ravel()
    return np.stack([p_weights, q_weights, -q_weights, p_weights], axis=1)


@dataclass(frozen=True)
class _Cascade:
    """One cascade level, laid out for evaluating all its trees at once."""

    delta_x: np.ndarray  # (pixels,) float32 offsets from the anchor landmark
    delta_y: np.ndarray
    anchor_xy: np.ndarray  # (2, pixels) indices of the anchor's x and y in a flat shape
    split_pixels: np.ndarray  # (2, trees*15) the two feature pixels of every split
    split_thresh: np.ndarray  # (trees*15,) float32
    leaf_values: np.ndarray  # (trees*16, 2*parts) float32


@dataclass(frozen=True)
class _Model:
    initial_shape: np.ndarray  # (2*parts,) float32, x0 y0 x1 y1 ...
    similarity_weights: np.ndarray
    cascades: list[_Cascade]
    tree_base: np.ndarray
    split_bit_values: np.ndarray
    leaf_lookup: np.ndarray


class LandmarkPredictor:
    """dlib's 5-point shape predictor; the model loads on first use and is safe to share."""

    def __init__(self, model: dict[str, np.ndarray] | None = None) -> None:
        self._model = model
        self._prepared: _Model | None = None
        self._lock = threading.Lock()

    def _arrays(self) -> _Model:
        if self._prepared is None:
            with self._lock:
                if self._prepared is None:
                    self._prepared = self._prepare(self._model if self._model is not None else load_landmark_model())
        return self._prepared

    @staticmethod
    def _prepare(model: dict[str, np.ndarray]) -> _Model:
        num_cascades, num_trees = model["split_idx1"].shape[:2]
        initial_shape = model["initial_shape"].reshape(NUM_PARTS, 2)
        anchors = model["anchor_idx"].astype(np.intp)
        cascades = [
            _Cascade(
                delta_x=model["deltas"][c, :, 0].copy(),
                delta_y=model["deltas"][c, :, 1].copy(),
                anchor_xy=np.stack([2 * anchors[c], 2 * anchors[c] + 1]),
                split_pixels=np.stack([model["split_idx1"][c].ravel(), model["split_idx2"][c].ravel()]).astype(np.intp),
                split_thresh=model["split_thresh"][c].ravel(),
                leaf_values=model["leaf_values"][c].reshape(num_trees * NUM_LEAVES, 2 * NUM_PARTS),
            )
            for c in range(num_cascades)
        ]
        return _Model(
            initial_shape=initial_shape.reshape(-1),
            similarity_weights=_similarity_weights(initial_shape),
            cascades=cascades,
            tree_base=np.arange(num_trees) * NUM_LEAVES,
            split_bit_values=(1 << np.arange(NUM_SPLITS)).astype(np.float32),
            leaf_lookup=_leaf_lookup(),
        )

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
        rgb = np.ascontiguousarray(image).reshape(-1, 3)
        image_limits = np.array([[width], [height]], dtype=np.uint64)
        box = _box_transforms(box_array)
        num_boxes = len(box_array)
        # Row 0 holds the current shape and rows 1.. the trees' outputs, summed in order.
        terms = np.empty((num_boxes, 1 + model.tree_base.size, 2 * NUM_PARTS), dtype=np.float32)
        shape = np.tile(model.initial_shape, (num_boxes, 1))

        for cascade in model.cascades:
            # The reference -> current similarity, dlib's float32 2x2 [[p, -q], [q, p]], as
            # its columns: coef[:, 0] = (p, q) multiplies dx, coef[:, 1] = (-q, p) multiplies dy.
            coef = (shape.astype(np.float64) @ model.similarity_weights).astype(np.float32)
            coef = coef.reshape(num_boxes, 2, 2, 1)
            # Feature pixels in normalized box space, float32 in dlib's order: (m0*dx + m1*dy) + anchor.
            anchored = np.take(shape, cascade.anchor_xy, axis=1)
            points = coef[:, 0] * cascade.delta_x + coef[:, 1] * cascade.delta_y + anchored
            pixel = _to_image(box, points).astype(np.int64)
            # Negative coordinates wrap to huge unsigned values: one comparison per axis.
            inside = (pixel.view(np.uint64) < image_limits).all(axis=1)
            flat_index = (pixel[:, 1] * width + pixel[:, 0]) * inside
            # dlib's grey level (r + g + b) / 3 in integers; the float32 sum and quotient are exact
            # enough that flooring reproduces it, and outside pixels read 0.
            channel_sum = np.take(rgb, flat_index, axis=0) @ _ONES3
            features = np.floor(channel_sum / 3) * inside

            pair = np.take(features, cascade.split_pixels, axis=1)
            went_left = pair[:, 0] - pair[:, 1] > cascade.split_thresh
            # Each tree's 15 outcomes as a 15-bit code (exact in float32), then code -> leaf.
            codes = went_left.reshape(num_boxes, -1, NUM_SPLITS).astype(np.float32) @ model.split_bit_values
            leaves = model.leaf_lookup[codes.astype(np.intp)] + model.tree_base
            terms[:, 0] = shape
            np.take(cascade.leaf_values, leaves, axis=0, out=terms[:, 1:], mode="clip")
            # dlib adds the trees' outputs one after another in float32. Reducing over a
            # non-innermost axis, numpy adds whole rows in order (no pairwise summation);
            # tests/test_landmarks.py checks that this stays true.
            shape = np.add.reduce(terms, axis=1)

        pixel = _to_image(box, shape.reshape(num_boxes, NUM_PARTS, 2).transpose(0, 2, 1))
        column, row = pixel[:, 0], pixel[:, 1]
        return np.stack([column, row], axis=-1).astype(np.int64)
