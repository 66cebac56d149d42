"""Locate dlib's model files inside the installed ``face-recognition-models`` package.

The package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer
ships, so we find its directory through the import system without executing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gallery.errors import ModelFilesNotFound

DETECTOR_FILE = "mmod_human_face_detector.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def model_path(filename: str) -> Path:
    """Path of one of dlib's ``.dat`` files shipped by face-recognition-models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesNotFound(
            "the 'face-recognition-models' package is not installed: pip install face-recognition-models"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ModelFilesNotFound(f"{filename} is missing from the face-recognition-models package at {path.parent}")
    return path
