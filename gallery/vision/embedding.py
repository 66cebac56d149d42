"""Face chips -> 128-d descriptors with dlib's ResNet, batched and safe to share between threads."""

from __future__ import annotations

import threading

import numpy as np
import torch

from gallery.models.pretrained import load_recognition_network
from gallery.models.resnet import (
    DESCRIPTOR_SIZE,
    INPUT_MEAN_RGB,
    INPUT_SCALE,
    INPUT_SIZE,
    FaceResNet,
)
from gallery.vision.threads import sharing_cores

# Recorded beside every stored embedding: descriptors of different models must never be compared.
MODEL_ID = "dlib_resnet_v1"

_network: FaceResNet | None = None
_network_lock = threading.Lock()


def embedding_model_id() -> str:
    """Identifier of the model behind ``Embedder``'s descriptors."""
    return MODEL_ID


def recognition_network() -> FaceResNet:
    """The process-wide recognition network, loaded on first use."""
    global _network
    if _network is None:
        with _network_lock:
            if _network is None:
                _network = load_recognition_network()
    return _network


def _normalise(chips: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) as dlib's input_rgb_image_sized feeds the net."""
    # A fresh float copy: chips may be read-only (PIL) or mirrored views with negative strides.
    pixels = torch.from_numpy(np.ascontiguousarray(chips, dtype=np.float32))
    pixels.sub_(torch.tensor(INPUT_MEAN_RGB, dtype=torch.float32)).mul_(INPUT_SCALE)  # 1/256: exact
    return pixels.permute(0, 3, 1, 2)  # channels-last memory, which the network prefers


class Embedder:
    """Computes dlib-compatible face descriptors for 150x150 face chips.

    Safe to share between threads. The network is read-only at inference, so callers run their
    forwards concurrently: on 2 cores that measured as fast as serialising them with a lock,
    and faster when other processes compete for the cores.
    """

    def __init__(self, batch_size: int = 32, flip: bool = False) -> None:
        """Create an embedder.

        Args:
            batch_size: chips per forward pass (bounds peak memory; 32 is near the fastest).
            flip: also embed each mirrored chip and average the two descriptors
                (test-time augmentation; twice the work, not what dlib computes).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.flip = flip

    @property
    def model_id(self) -> str:
        """What a stored descriptor records: averaged-with-mirror descriptors are not dlib's own."""
        return f"{MODEL_ID}+flip" if self.flip else MODEL_ID

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors of aligned face chips.

        Args:
            chips: (N, 150, 150, 3) uint8 RGB chips as made by dlib's ``get_face_chip``; N may be 0.

        Returns:
            (N, 128) float32 descriptors; same-person pairs lie within about 0.6 (Euclidean).
        """
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 chips, got {chips.shape} {chips.dtype}"
            )
        descriptors = np.empty((len(chips), DESCRIPTOR_SIZE), dtype=np.float32)
        if not len(chips):
            return descriptors
        network = recognition_network()
        with sharing_cores(), torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = chips[start : start + self.batch_size]
                out = network(_normalise(batch))
                if self.flip:
                    mirrored = network(_normalise(batch[:, :, ::-1]))
                    out = (out + mirrored) * 0.5
                descriptors[start : start + len(batch)] = out.numpy()
        return descriptors
