"""dlib's three trained models, ready to use: read from dlib's files once, cached, verified, built.

Each model joins three owners: a reader of dlib's file (``resnet_dlib``, ``mmod_dlib``,
``shape_predictor``), the verified safetensors cache (``weights``), and for the two networks
the torch module that adopts the arrays (``resnet``, ``mmod``). Only this module knows all
three, so a network module reads as the network and a reader as the file format.
"""

from __future__ import annotations

import threading

import numpy as np

from gallery.models import mmod_dlib, resnet_dlib, shape_predictor
from gallery.models.mmod import DetectorSettings, MMODNetwork, detector_network_from_arrays
from gallery.models.resnet import FaceResNet, recognition_network_from_arrays
from gallery.models.weights import load_converted


def load_recognition_network() -> FaceResNet:
    """dlib's recognition network with its weights, in eval mode (converted once, then cached)."""
    arrays = load_converted(
        resnet_dlib.WEIGHTS_NAME, resnet_dlib.RECOGNITION_SHA256, resnet_dlib.convert_recognition_model
    )
    return recognition_network_from_arrays(arrays)


_detector_lock = threading.Lock()
_detector: tuple[MMODNetwork, DetectorSettings] | None = None


def load_detector_network() -> tuple[MMODNetwork, DetectorSettings]:
    """The detector network (eval, channels-last, weights loaded) and its settings; loaded once per process."""
    global _detector
    with _detector_lock:
        if _detector is None:
            arrays = load_converted(
                mmod_dlib.DETECTOR_NAME, mmod_dlib.DETECTOR_SHA256, mmod_dlib.convert_detector_model
            )
            _detector = (detector_network_from_arrays(arrays), DetectorSettings.from_arrays(arrays))
        return _detector


def load_landmark_model() -> dict[str, np.ndarray]:
    """The shape predictor's arrays, from the verified cache (converted on first use)."""
    return load_converted(
        shape_predictor.WEIGHTS_NAME, shape_predictor.LANDMARKS_SHA256, shape_predictor.convert_landmark_model
    )
