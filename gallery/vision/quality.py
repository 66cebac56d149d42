"""A basic enrolment quality gate: is this face good enough to be someone's only template?

One-shot enrolment makes the single photo every later decision's reference, so a face
that is tiny, blurred, nearly black or burnt out, or that the detector barely believes,
is refused with the reason rather than stored. Thresholds are deliberately permissive:
they catch photos a person would also call unusable (checked against LFW, where almost
every photo passes), not merely imperfect ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gallery.types import Box

MIN_FACE_SIZE = 60  # pixels, detector box side: below this the 150 px chip is mostly upscaled blur
MIN_DETECTOR_SCORE = 0.3  # mmod confidence: real faces score about 1 (LFW: 0.45 and up)
MIN_SHARPNESS = 5.0  # variance of the chip's Laplacian: LFW photos score 7 and up, a 3 px blur about 3
BRIGHTNESS_RANGE = (35.0, 225.0)  # mean grey level of the chip; LFW ranges 47..158


@dataclass(frozen=True)
class Quality:
    """Measurements of one face and, when it fails the gate, why."""

    size: int
    score: float
    sharpness: float
    brightness: float
    problem: str | None

    @property
    def acceptable(self) -> bool:
        return self.problem is None


def assess(box: Box, score: float, chip: np.ndarray) -> Quality:
    """Measure a detected face (its box, detector score and aligned chip) against the gate."""
    size = min(box[2] - box[0], box[3] - box[1]) + 1
    grey = chip.astype(np.float32).mean(axis=2)
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    sharpness = float(laplacian.var())
    brightness = float(grey.mean())
    problem = None
    if size < MIN_FACE_SIZE:
        problem = f"the face is {size} px across; enrolment needs at least {MIN_FACE_SIZE} px"
    elif score < MIN_DETECTOR_SCORE:
        problem = f"the detector is unsure this is a face (score {score:.2f} < {MIN_DETECTOR_SCORE})"
    elif brightness < BRIGHTNESS_RANGE[0]:
        problem = f"the face is too dark (mean level {brightness:.0f} < {BRIGHTNESS_RANGE[0]:.0f})"
    elif brightness > BRIGHTNESS_RANGE[1]:
        problem = f"the face is overexposed (mean level {brightness:.0f} > {BRIGHTNESS_RANGE[1]:.0f})"
    elif sharpness < MIN_SHARPNESS:
        problem = f"the face is blurred (sharpness {sharpness:.1f} < {MIN_SHARPNESS:g})"
    return Quality(size=size, score=score, sharpness=sharpness, brightness=brightness, problem=problem)
