"""Aligned face chips, pixel-exact with ``dlib.get_face_chip(img, shape, size, padding)``.

dlib fits a similarity transform from the 5 landmarks to its template face, turns it into
a rotated rectangle (``get_face_chip_details``), then ``extract_image_chips`` samples that
rectangle with bilinear interpolation (truncated to uint8, black outside the image),
first shrinking the image with ``pyramid_down<2>`` while the rectangle is much larger than
the chip. Every double that decides a sample position is computed as dlib computes it
(see ``dlib_linalg``), because in flat regions one last-bit difference flips a pixel.

One face per call: dlib builds its pyramid over the bounding box of all the faces it is
given at once, so a face's chip could depend on the other faces in the photo. Like
face_recognition, we always extract each face on its own, so a chip depends only on its
own face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gallery.types import Box
from gallery.vision.dlib_linalg import Point, apply_affine, find_affine_transform, find_similarity_transform

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point template (get_face_chip_details), in the order of the 5-point model's parts.
_TEMPLATE_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: a rectangle (l, t, r, b) rotated by ``angle`` about its centre."""

    left: float
    top: float
    right: float
    bottom: float
    angle: float
    rows: int
    cols: int


Rect = tuple[float, float, float, float]  # dlib's drectangle: left, top, right, bottom
Affine2x2 = tuple[tuple[float, float], tuple[float, float]]


def _area(rect: Rect) -> float:
    left, top, right, bottom = rect
    if top > bottom or left > right:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _center(rect: Rect) -> Point:
    left, top, right, bottom = rect
    return ((left + right) / 2.0, (top + bottom) / 2.0)


def _rect_down(rect: Rect) -> Rect:
    """``pyramid_down<2>::rect_down``: where a rectangle lands one pyramid level down."""
    left, top, right, bottom = rect
    return (left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75)


def _rotate_point(center: Point, point: Point, sin_a: float, cos_a: float) -> Point:
    """dlib's ``rotate_point``: rotate ``point`` about ``center``."""
    dx, dy = point[0] - center[0], point[1] - center[1]
    return (cos_a * dx - sin_a * dy + center[0], sin_a * dx + cos_a * dy + center[1])


def _lround(value: float) -> int:
    """C's ``lround`` (halves away from zero), which dlib uses to turn a drectangle into a rectangle."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    return int(rounded) if value >= 0 else -int(rounded)


def chip_details(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for 5 landmarks (integer points as dlib reports them).

    Args:
        landmarks: (5, 2) landmark coordinates (x, y) from the 5-point shape predictor.
        size: side of the square chip in pixels.
        padding: margin around the template face, as a fraction of its size.

    Returns:
        The rotated rectangle of the image that the chip covers.
    """
    points = np.asarray(landmarks)
    if points.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got shape {points.shape}")
    if size <= 0 or padding < 0:
        raise ValueError("size must be positive and padding non-negative")
    # dlib divides a matrix expression by a scalar by multiplying with its reciprocal.
    inv_span = 1.0 / (2 * padding + 1)
    chip_points = [((padding + x) * inv_span * size, (padding + y) * inv_span * size) for x, y in _TEMPLATE_5]
    image_points = [(float(x), float(y)) for x, y in points.tolist()]
    m, b = find_similarity_transform(chip_points, image_points)
    # The first column of the transform holds scale and rotation; its translation goes
    # into the rectangle's centre.
    px, py = m[0][0], m[1][0]
    angle = math.atan2(py, px)
    scale = math.sqrt(px * px + py * py)
    cx, cy = apply_affine(m, b, (size / 2.0, size / 2.0))
    width = size * scale - 1
    height = size * scale - 1
    return ChipDetails(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2, angle, size, size)


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` for RGB: 1-4-6-4-1 filter both ways, integer division by 256."""
    rows, cols = image.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    out_rows, out_cols = (rows - 3) // 2, (cols - 3) // 2
    # 16 bits suffice: a row sum is at most 16*255 and a column sum 256*255, as in dlib.
    wide = image.astype(np.uint16)
    span = 2 * out_cols
    across = (
        wide[:, 0:span:2]
        + 4 * wide[:, 1 : span + 1 : 2]
        + 6 * wide[:, 2 : span + 2 : 2]
        + 4 * wide[:, 3 : span + 3 : 2]
        + wide[:, 4 : span + 4 : 2]
    )
    span = 2 * out_rows
    down = (
        across[0:span:2]
        + 4 * across[1 : span + 1 : 2]
        + 6 * across[2 : span + 2 : 2]
        + 4 * across[3 : span + 3 : 2]
        + across[4 : span + 4 : 2]
    )
    return (down // 256).astype(np.uint8)


# Rows sampled per block: keeps each float64 temporary (3 x rows x cols) under glibc's
# 128 KiB mmap threshold, so numpy's temporaries are recycled instead of being mapped and
# page-faulted afresh on every call (a whole 150x150 chip at once runs ~4x slower).
_ROWS_PER_BLOCK = 30


def _sample_bilinear(source: np.ndarray, m: Affine2x2, b: Point, rows: int, cols: int) -> np.ndarray:
    """dlib's ``transform_image`` with ``interpolate_bilinear`` and a black background."""
    flat = np.ascontiguousarray(source).reshape(-1)
    chip = np.empty((rows, cols, 3), dtype=np.uint8)
    for first in range(0, rows, _ROWS_PER_BLOCK):
        last = min(rows, first + _ROWS_PER_BLOCK)
        chip[first:last] = _sample_rows(flat, source.shape[:2], m, b, first, last, cols)
    return chip


def _sample_rows(
    flat: np.ndarray, shape: tuple[int, int], m: Affine2x2, b: Point, first: int, last: int, cols: int
) -> np.ndarray:
    """Chip rows ``first:last`` of ``_sample_bilinear``, from the source's flattened pixels."""
    c = np.arange(cols, dtype=np.float64)
    r = np.arange(first, last, dtype=np.float64)[:, None]
    # Same association as dlib's m*p + b.
    x = ((m[0][0] * c + m[0][1] * r) + b[0]).ravel()
    y = ((m[1][0] * c + m[1][1] * r) + b[1]).ravel()
    with np.errstate(invalid="ignore"):
        left = np.floor(x)
        top = np.floor(y)
    src_rows, src_cols = shape
    inside = (left >= 0) & (top >= 0) & (left + 1 < src_cols) & (top + 1 < src_rows)
    if not inside.any():
        return np.zeros((last - first, cols, 3), dtype=np.uint8)
    lr = x - left
    tb = y - top
    # Work channel-planar, (3, pixels), so the per-pixel weights broadcast along rows, and
    # gather the neighbours as uint8 before widening.
    offsets = 3 * np.where(inside, top * src_cols + left, 0).astype(np.intp) + np.arange(3)[:, None]
    tl = flat[offsets].astype(np.float64)
    tr = flat[offsets + 3].astype(np.float64)
    bl = flat[offsets + 3 * src_cols].astype(np.float64)
    br = flat[offsets + 3 * src_cols + 3].astype(np.float64)
    value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    # dlib converts to unsigned char with a plain cast: truncation, not rounding.
    block = value.astype(np.uint8)
    block[:, ~inside] = 0
    return block.T.reshape(last - first, cols, 3)


def _copy_chip(image: np.ndarray, details: ChipDetails) -> np.ndarray:
    """dlib's shortcut when the chip is an unrotated, unscaled crop: copy, black outside."""
    left, top = _lround(details.left), _lround(details.top)
    chip = np.zeros((details.rows, details.cols, 3), dtype=np.uint8)
    rows, cols = image.shape[:2]
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + details.rows, rows), min(left + details.cols, cols)
    if src_top < src_bottom and src_left < src_right:
        chip[src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
            src_top:src_bottom, src_left:src_right
        ]
    return chip


@dataclass(frozen=True)
class ChipSampling:
    """How dlib samples one chip: crop box, pyramid levels, and the chip -> source transform.

    ``m`` and ``b`` map chip pixel (col, row) to (x, y) in the crop after ``level + 1``
    pyramid steps (``level == -1``: the crop itself); ``crop`` is (left, top, right,
    bottom), inclusive, or None when the chip lies wholly outside the image.
    """

    crop: Box | None
    depth: int
    level: int
    m: Affine2x2
    b: Point


def chip_sampling(image_shape: tuple[int, ...], details: ChipDetails) -> ChipSampling:
    """dlib's ``extract_image_chips`` bookkeeping for one rotated/scaled chip."""
    chip_rect: Rect = (details.left, details.top, details.right, details.bottom)
    chip_area = details.rows * details.cols

    # How many pyramid levels, and the margin (2 pixels per level) the crop needs.
    depth = 0
    grow = 2.0
    down = _rect_down(chip_rect)
    while _area(down) > chip_area:
        down = _rect_down(down)
        depth += 1
        grow = grow * 2 + 2

    # Crop to the rotated rectangle's bounding box (plus margin) before building the pyramid.
    sin_a, cos_a = math.sin(details.angle), math.cos(details.angle)
    center = _center(chip_rect)
    left, top, right, bottom = chip_rect
    corners = [
        _rotate_point(center, corner, sin_a, cos_a)
        for corner in ((left, top), (right, top), (left, bottom), (right, bottom))
    ]
    rows, cols = image_shape[:2]
    crop = (
        _lround(max(min(p[0] for p in corners) - grow, 0.0)),
        _lround(max(min(p[1] for p in corners) - grow, 0.0)),
        _lround(min(max(p[0] for p in corners) + grow, float(cols - 1))),
        _lround(min(max(p[1] for p in corners) + grow, float(rows - 1))),
    )
    if crop[0] > crop[2] or crop[1] > crop[3]:
        # dlib's bounding box stays empty: every sample falls outside and the chip is black.
        return ChipSampling(None, depth, -1, ((0.0, 0.0), (0.0, 0.0)), (-1.0, -1.0))

    # Which level to sample from, judged on the rectangle in crop coordinates.
    level = -1
    rect: Rect = (left - crop[0], top - crop[1], right - crop[0], bottom - crop[1])
    while _area(_rect_down(rect)) > chip_area:
        level += 1
        rect = _rect_down(rect)

    center = _center(rect)
    rl, rt, rr, rb = rect
    target = [_rotate_point(center, corner, sin_a, cos_a) for corner in ((rl, rt), (rr, rt), (rl, rb))]
    chip_corners = [(0.0, 0.0), (float(details.cols - 1), 0.0), (0.0, float(details.rows - 1))]
    m, b = find_affine_transform(chip_corners, target)
    (m00, m01), (m10, m11) = m
    return ChipSampling(crop, depth, level, ((m00, m01), (m10, m11)), b)


def extract_chip_from_details(image: np.ndarray, details: ChipDetails) -> np.ndarray:
    """dlib's ``extract_image_chip`` (bilinear) for one chip on an HxWx3 uint8 image."""
    if (
        details.angle == 0
        and details.rows == details.bottom - details.top + 1
        and details.cols == details.right - details.left + 1
    ):
        return _copy_chip(image, details)
    plan = chip_sampling(image.shape, details)
    if plan.crop is None:
        return np.zeros((details.rows, details.cols, 3), dtype=np.uint8)
    left, top, right, bottom = plan.crop
    source = image[top : bottom + 1, left : right + 1]
    if plan.level >= plan.depth:
        raise ArithmeticError("chip pyramid level beyond the levels dlib builds")
    sample_from = source
    for _ in range(plan.level + 1):
        sample_from = pyramid_down(sample_from)
    return _sample_bilinear(sample_from, plan.m, plan.b, details.rows, details.cols)


def extract_chip(
    image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The aligned face chip dlib's ``get_face_chip`` returns for one face.

    Each face is extracted on its own (dlib's pyramid then covers only this face), as
    face_recognition does, so the chip does not depend on other faces in the photo.

    Args:
        image: HxWx3 uint8 RGB image.
        landmarks: (5, 2) points from the 5-point shape predictor, in image pixels.
        size: side of the square chip in pixels (dlib's recognition model wants 150).
        padding: margin around the template face, as a fraction of its size.

    Returns:
        A (size, size, 3) uint8 RGB chip; parts outside the image are black.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} array of shape {image.shape}")
    return extract_chip_from_details(image, chip_details(landmarks, size, padding))
