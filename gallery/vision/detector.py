"""Face detection with dlib's MMOD CNN detector, reproducing ``cnn_face_detection_model_v1``.

dlib does not run its network once per pyramid level: it packs every level of a 5/6 image
pyramid into one tiled image, runs the fully convolutional network once, and maps each positive
output cell back through the tile it falls in. Every step here follows dlib 20's arithmetic
(float32 where dlib's SSE code works in float32, double where it works in double), so the
network sees the very pixels dlib's does (checked bit for bit against dlib's resize_image) and
only the convolutions' summation order differs (scores within ~4e-6 of dlib's).

Boxes are reported in dlib's convention: ``(left, top, right, bottom)`` in pixels of the image
given, with right and bottom INCLUSIVE (dlib's ``rect.right()``, ``rect.bottom()``), so the box
width is ``right - left + 1``. Boxes may extend past the image border, as dlib's do.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from gallery.models.mmod import (
    PYRAMID_MIN_HEIGHT,
    PYRAMID_RATE,
    PYRAMID_UP_OFFSET,
    PYRAMID_UP_RATIO,
    DetectorSettings,
    MMODNetwork,
    output_to_input_mapping,
)
from gallery.models.pretrained import load_detector_network
from gallery.types import Box
from gallery.vision.threads import sharing_cores


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` is (left, top, right, bottom), right/bottom inclusive; ``score`` > 0."""

    box: Box
    score: float


# ---------------------------------------------------------------------------------------------
# dlib's bilinear resize_image (dlib/image_transforms/interpolation.h), bit for bit
#
# dlib's SSE path walks 4 output columns at a time with float32 coordinates accumulated by
# repeated addition, truncates them to integers, and mixes the 4 neighbours with float32
# weights; the columns left over at the right edge go through a scalar path in double. Rows
# use double coordinates, also accumulated by repeated addition. We reproduce each of these.


@dataclass(frozen=True)
class _Axis:
    """Source indices and fractions for one axis of a bilinear resize."""

    low: np.ndarray  # int64 index of the left/top neighbour
    high: np.ndarray  # int64 index of the right/bottom neighbour
    frac: np.ndarray  # float64, except float32 for the SSE columns


def _row_axis(in_size: int, out_size: int) -> _Axis:
    """Rows: y starts at -scale and gains scale per row, in double."""
    scale = (in_size - 1) / max(out_size - 1, 1)
    steps = np.full(out_size + 1, scale)
    steps[0] = -scale
    y = np.add.accumulate(steps)[1:]  # sequential, like the C++ loop
    low = np.floor(y).astype(np.int64)
    return _Axis(low, np.minimum(low + 1, in_size - 1), y - low)


def _column_axes(in_size: int, out_size: int) -> tuple[_Axis, _Axis]:
    """Columns: (SSE columns with float32 fractions, scalar tail columns with double ones)."""
    scale = (in_size - 1) / max(out_size - 1, 1)
    x = -4 * scale
    groups = out_size // 4 + 2
    lanes = np.empty((groups + 1, 4), dtype=np.float32)
    lanes[0] = np.array([x, x + scale, x + 2 * scale, x + 3 * scale], dtype=np.float64).astype(np.float32)
    lanes[1:] = np.float32(4 * scale)
    lanes = np.add.accumulate(lanes, axis=0)[1:]  # float32, one addition per group of 4
    left = lanes.astype(np.int32)  # _mm_cvttps_epi32 truncates; x >= 0
    # The SSE loop stops at the first group whose last right neighbour leaves the image.
    past_edge = left[:, 3] + 1 >= in_size
    if not past_edge.any():
        raise AssertionError("bilinear resize: SSE column loop never reached the edge")
    stop = int(np.argmax(past_edge))
    simd_count = min(4 * stop, out_size)
    left_flat = left[:stop].reshape(-1)[:simd_count].astype(np.int64)
    frac = lanes[:stop].reshape(-1)[:simd_count] - left_flat.astype(np.float32)
    simd = _Axis(left_flat, left_flat + 1, frac)

    tail_steps = np.full(out_size - simd_count + 1, scale)
    tail_steps[0] = -scale + simd_count * scale
    tail_x = np.add.accumulate(tail_steps)[1:]
    tail_left = np.floor(tail_x).astype(np.int64)
    tail = _Axis(tail_left, np.minimum(tail_left + 1, in_size - 1), tail_x - tail_left)
    return simd, tail


@dataclass(frozen=True)
class _ResizePlan:
    """The index and fraction tables of one (in_rows, in_cols) -> (out_rows, out_cols) resize.

    Only one-dimensional tables are kept (cached); the 2-D weights are formed per call, as
    caching them would hold tens of megabytes per image size.
    """

    rows: _Axis
    simd: _Axis
    tail: _Axis
    # float32(tb), float32(1 - tb) per output row, as columns for broadcasting.
    row_weights: tuple[np.ndarray, np.ndarray]
    # float32 lr and 1 - lr per SSE column, repeated per channel to match flat rows of pixels.
    column_weights: tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=256)
def _resize_plan(in_rows: int, in_cols: int, out_rows: int, out_cols: int, channels: int) -> _ResizePlan:
    rows = _row_axis(in_rows, out_rows)
    simd, tail = _column_axes(in_cols, out_cols)
    tb = rows.frac.astype(np.float32)[:, None]
    inv_tb = (1 - rows.frac).astype(np.float32)[:, None]  # 1 - tb in double, then float, as dlib
    lr = np.repeat(simd.frac, channels)
    inv_lr = np.float32(1) - lr
    plan = _ResizePlan(rows, simd, tail, (tb, inv_tb), (lr, inv_lr))
    for axis in (rows, simd, tail):
        for array in (axis.low, axis.high, axis.frac):
            array.flags.writeable = False  # shared by every caller through the cache
    for array in (tb, inv_tb, lr, inv_lr):
        array.flags.writeable = False
    return plan


def _flat_rows(image: np.ndarray) -> np.ndarray:
    """A (rows, cols * channels) view of a (rows, cols, channels) view whose pixels are contiguous."""
    rows, cols, channels = image.shape
    if image.size == 0:
        return np.empty((rows, 0), dtype=image.dtype)  # nothing to read or write
    # Strides of axes of length 1 are arbitrary; only those that are walked must be contiguous.
    if (channels > 1 and image.strides[2] != image.itemsize) or (
        cols > 1 and image.strides[1] != channels * image.itemsize
    ):
        raise ValueError("image rows are not contiguous")
    return np.lib.stride_tricks.as_strided(image, (rows, cols * channels), (image.strides[0], image.itemsize))


def _simd_blend(src: np.ndarray, plan: _ResizePlan, out: np.ndarray) -> None:
    """out = ((tl*w_tl + tr*w_tr) + bl*w_bl) + br*w_br in float32, the order of dlib's SSE code."""
    rows, simd = plan.rows, plan.simd
    # Gather columns once over all source rows, then rows (cheap contiguous copies).
    left = _flat_rows(np.take(src, simd.low, axis=1, mode="clip"))
    right = _flat_rows(np.take(src, simd.high, axis=1, mode="clip"))
    flat_out = _flat_rows(out)
    tb, inv_tb = plan.row_weights
    lr, inv_lr = plan.column_weights
    buffer = np.empty(flat_out.shape, dtype=np.float32)
    weight = np.empty(flat_out.shape, dtype=np.float32)
    terms = ((left, rows.low, inv_tb, inv_lr), (right, rows.low, inv_tb, lr), (left, rows.high, tb, inv_lr))
    for index, (source, row_index, row_weight, column_weight) in enumerate((*terms, (right, rows.high, tb, lr))):
        np.multiply(row_weight, column_weight, out=weight)  # the float32 weight, rounded as dlib's
        np.take(source, row_index, axis=0, out=buffer, mode="clip")
        if index == 0:
            np.multiply(buffer, weight, out=flat_out)
        else:
            buffer *= weight
            flat_out += buffer


def _tail_neighbours(src: np.ndarray, plan: _ResizePlan) -> tuple[np.ndarray, ...]:
    """tl, tr, bl, br source pixels of the scalar tail columns."""
    rows, tail = plan.rows, plan.tail
    left, right = src[:, tail.low], src[:, tail.high]  # a few columns: gather them first
    return left[rows.low], right[rows.low], left[rows.high], right[rows.high]


def resize_float_image(src: np.ndarray, out: np.ndarray) -> None:
    """dlib's resize_image of a float32 (h, w, C) image into ``out`` (H, W, C): how pyramid levels are made."""
    plan = _resize_plan(src.shape[0], src.shape[1], out.shape[0], out.shape[1], src.shape[2])
    count = plan.simd.low.size
    _simd_blend(src, plan, out[:, :count])
    if count < out.shape[1]:
        tl, tr, bl, br = _tail_neighbours(src, plan)
        lr = plan.tail.frac.astype(np.float32)[:, None]
        inv_lr = np.float32(1) - lr
        upper = inv_lr * tl + lr * tr  # float32, as dlib's scalar loop
        lower = inv_lr * bl + lr * br
        tb = plan.rows.frac[:, None, None]
        out[:, count:] = (1 - tb) * upper + tb * lower  # double, stored as float


def pyramid_up_rgb(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_up with pyramid_down<2>: an HxWx3 uint8 image becomes (2H+1)x(2W+2)x3."""
    in_rows, in_cols = image.shape[:2]
    if in_rows * in_cols == 0:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    # rect_up maps (0,0,W-1,H-1) to (2.5, 1.5, 2W+0.5, 2H-0.5), rounded: bottom 2H, right 2W+1.
    out_rows, out_cols = 2 * in_rows + 1, 2 * in_cols + 2
    plan = _resize_plan(in_rows, in_cols, out_rows, out_cols, 3)
    pixels = image.astype(np.float32)
    out = np.empty((out_rows, out_cols, 3), dtype=np.uint8)
    count = plan.simd.low.size
    blended = np.empty((out_rows, count, 3), dtype=np.float32)
    _simd_blend(pixels, plan, blended)
    out[:, :count] = blended.astype(np.int32)  # float -> int32 truncates; then to unsigned char
    if count < out_cols:
        tl, tr, bl, br = (t.astype(np.float64) for t in _tail_neighbours(pixels, plan))
        lr, tb = plan.tail.frac[:, None], plan.rows.frac[:, None, None]
        value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)  # all double
        out[:, count:] = value.astype(np.int32)
    return out


# ---------------------------------------------------------------------------------------------
# Tiled image pyramid (dlib/image_transforms/image_pyramid.h, compute_tiled_image_pyramid_details)


def pyramid_level_sizes(rows: int, cols: int) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level: floor(5/6 n) of the previous, while >= 5 rows."""
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(PYRAMID_RATE * rows), math.floor(PYRAMID_RATE * cols)
        if rows * cols == 0 or rows < PYRAMID_MIN_HEIGHT:
            return sizes
        sizes.append((rows, cols))


def tile_pyramid(rows: int, cols: int, padding: int, outer_padding: int) -> tuple[list[Box], int, int]:
    """Where each level sits in the tiled image, and the tiled image's (rows, cols).

    Levels go down a first column from the top, then (right-aligned) up a second column from
    the bottom, stopping before one would overlap the full-size image.
    """
    if rows * cols == 0:
        return [], 0, 0
    sizes = pyramid_level_sizes(rows, cols)
    first_height, first_width = sizes[0]

    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height = 0
    prev_width = 0
    for h, w in sizes:
        # Stop the first column once the next level fits beside the previous one and the
        # first column already holds at least half of the total height.
        if w <= first_width - prev_width - padding and (height - first_height) * 2 >= total_height - first_height:
            break
        height += h + padding
        prev_width = w
    height -= padding

    rects: list[Box] = []
    y = outer_padding
    index = 0
    while y < height + outer_padding and index < len(sizes):
        h, w = sizes[index]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        index += 1
    y -= padding
    first = rects[0]
    while index < len(sizes):
        h, w = sizes[index]
        right, bottom = outer_padding + first_width - 1, y - 1
        rect = (right - w + 1, bottom - h + 1, right, bottom)
        if _intersects(first, rect):
            break
        rects.append(rect)
        y -= h + padding
        index += 1
    return rects, height + 2 * outer_padding, first_width + 2 * outer_padding


def _intersects(a: Box, b: Box) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def build_tiled_pyramid(image: np.ndarray, settings: DetectorSettings) -> tuple[np.ndarray, list[Box]]:
    """The network input for an HxWx3 uint8 RGB image: (rows, cols, 3) float32, and the tiles.

    Channels stay last: that is the layout the network runs in, so no copy is needed.
    """
    rows, cols = image.shape[:2]
    rects, total_rows, total_cols = tile_pyramid(rows, cols, settings.pyramid_padding, settings.pyramid_outer_padding)
    tiled = np.zeros((total_rows, total_cols, 3), dtype=np.float32)
    if not rects:
        return tiled, rects

    def tile(rect: Box) -> np.ndarray:
        left, top, right, bottom = rect
        return tiled[top : bottom + 1, left : right + 1]

    # dlib: (pixel - mean) in float, then /256 (exact, as is *2^-8).
    base = _flat_rows(tile(rects[0]))
    np.subtract(image.reshape(rows, cols * 3), np.tile(np.array(settings.input_mean, dtype=np.float32), cols), out=base)
    base *= np.float32(1 / 256)
    for previous, current in itertools.pairwise(rects):
        resize_float_image(tile(previous), tile(current))
    return tiled, rects


def network_input(tiled: np.ndarray) -> torch.Tensor:
    """The (1, 3, rows, cols) channels-last tensor viewing a tiled pyramid, without a copy."""
    return torch.from_numpy(tiled).permute(2, 0, 1)[None]


# ---------------------------------------------------------------------------------------------
# Decoding (dlib/dnn/loss.h loss_mmod_::to_label, tiled_pyramid_to_image)


def _nearest_tile(rects: list[Box], x: int, y: int) -> int:
    """dlib's nearest_rect: the first tile containing the point, else the closest one."""
    best, best_distance = 0, math.inf
    for index, (left, top, right, bottom) in enumerate(rects):
        if left <= x <= right and top <= y <= bottom:
            return index
        dx = min(max(x, left), right) - x
        dy = min(max(y, top), bottom) - y
        distance = math.sqrt(dx * dx + dy * dy)
        if distance < best_distance:
            best, best_distance = index, distance
    return best


def _round(value: float) -> int:
    """std::lround: halves away from zero (drectangle -> rectangle)."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def _overlaps(a: Box, b: Box, iou_threshold: float, covered_threshold: float) -> bool:
    """dlib's test_box_overlap: intersection over the ENCLOSING box's area, or over either box."""
    inner_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inner_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inner_w <= 0 or inner_h <= 0:
        return False
    inner = float(inner_w * inner_h)
    outer = float((max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1))
    area_a = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1))
    area_b = float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return inner / outer > iou_threshold or inner / area_a > covered_threshold or inner / area_b > covered_threshold


def decode_detections(scores: np.ndarray, rects: list[Box], settings: DetectorSettings) -> list[Detection]:
    """Positive cells of the (rows, cols) score map -> boxes in the pyramid's base image, after NMS."""
    scale, offset = output_to_input_mapping()
    half_width = (settings.window_width - 1) / 2  # centered_drect shrinks width by one first
    half_height = (settings.window_height - 1) / 2
    candidates: list[tuple[float, Box]] = []
    for r, c in zip(*np.nonzero(scores > 0), strict=True):
        # The window is centred on the cell's input pixel; that centre is an integer, so it
        # picks the tile directly (dlib rounds dcenter(rect) to a point).
        x, y = scale * int(c) + offset, scale * int(r) + offset
        level = _nearest_tile(rects, x, y)
        x, y = x - rects[level][0], y - rects[level][1]  # relative to the tile's top-left corner
        corners = [x - half_width, y - half_height, x + half_width, y + half_height]
        for _ in range(level):  # pyramid_down<6>::point_up, one level at a time
            corners = [value * PYRAMID_UP_RATIO + PYRAMID_UP_OFFSET for value in corners]
        box = (_round(corners[0]), _round(corners[1]), _round(corners[2]), _round(corners[3]))
        candidates.append((float(scores[r, c]), box))

    candidates.sort(key=lambda item: item[0], reverse=True)
    kept: list[Detection] = []
    for score, box in candidates:
        if any(_overlaps(other.box, box, settings.nms_iou_threshold, settings.nms_covered_threshold) for other in kept):
            continue
        kept.append(Detection(box=box, score=score))
    return kept


def _box_down(box: Box, levels: int) -> Box:
    """pyramid_down<2>::rect_down ``levels`` times: back from a pyramid_up'ed image."""
    corners = [float(v) for v in box]
    for _ in range(levels):
        left, top, right, bottom = corners
        corners = [left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75]
    return (_round(corners[0]), _round(corners[1]), _round(corners[2]), _round(corners[3]))


# ---------------------------------------------------------------------------------------------
# The detector


class FaceDetector:
    """dlib's CNN face detector (mmod_human_face_detector); thread-safe, loads its network lazily."""

    def __init__(self) -> None:
        self._network: MMODNetwork | None = None
        self._settings: DetectorSettings | None = None

    def _model(self) -> tuple[MMODNetwork, DetectorSettings]:
        if self._network is None or self._settings is None:
            self._network, self._settings = load_detector_network()
        return self._network, self._settings

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        """Faces in an RGB image, strongest first, as dlib's ``cnn_face_detection_model_v1`` finds them.

        Args:
            image: HxWx3 uint8 RGB array.
            upsample: how many times to double the image first (dlib's pyramid_up) to find
                smaller faces; boxes are still in the given image's pixels.

        Returns:
            Detections with boxes (left, top, right, bottom), right/bottom inclusive, and scores.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        network, settings = self._model()
        for _ in range(upsample):
            image = pyramid_up_rgb(image)
        tiled, rects = build_tiled_pyramid(np.ascontiguousarray(image), settings)
        if not rects or not _large_enough(tiled.shape[:2]):
            return []
        with sharing_cores(), torch.inference_mode():
            scores = network(network_input(tiled))[0, 0].numpy()
        detections = decode_detections(scores, rects, settings)
        if upsample:
            detections = [Detection(box=_box_down(d.box, upsample), score=d.score) for d in detections]
        return detections


def _large_enough(shape: tuple[int, ...]) -> bool:
    """Whether the network yields any output cell for a tiled image of this size."""
    rows, cols = shape
    for _ in range(3):  # the three unpadded stride-2 5x5 convolutions
        rows, cols = (rows - 5) // 2 + 1, (cols - 5) // 2 + 1
    return rows > 0 and cols > 0
