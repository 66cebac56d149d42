"""dlib's face recognition ResNet-29 (dlib_face_recognition_resnet_model_v1.dat) in torch.

The network mirrors the definition in dlib's ``dnn_face_recognition_ex.cpp``::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

where each level is a stack of residual blocks (``ares``) whose first block may halve the
resolution (``ares_down``). This module is the network only: ``resnet_dlib`` reads dlib's file
into arrays named like ``FaceResNet``'s state dict, and ``pretrained`` caches and loads them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# What the weights expect: a 150x150 RGB chip, minus dlib's per-channel mean, divided by 256.
INPUT_SIZE = 150
INPUT_MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SCALE = 1.0 / 256.0
DESCRIPTOR_SIZE = 128

STEM_CHANNELS = 32
# (channels, residual blocks, whether the first block halves the resolution), input side first:
# alevel4 .. alevel0 of dnn_face_recognition_ex.cpp.
LEVELS: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
PARAMETER_COUNT = 5_614_592


class Affine(nn.Module):
    """dlib's ``affine`` layer: a per-channel scale and shift (a frozen batch norm), in place.

    Like ``nn.ReLU(inplace=True)`` it overwrites its input: it always follows a convolution
    whose fresh output nobody else holds, and skipping two allocations per layer is measurable.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.beta = nn.Parameter(torch.zeros(channels), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Multiply, then add: dlib's CPU code computes gamma * x + beta the same way.
        return x.mul_(self.gamma.view(1, -1, 1, 1)).add_(self.beta.view(1, -1, 1, 1))


def _conv(in_channels: int, out_channels: int, size: int, stride: int) -> nn.Conv2d:
    # dlib pads by size/2 only when the stride is 1; strided convolutions are unpadded.
    return nn.Conv2d(in_channels, out_channels, size, stride=stride, padding=0 if stride != 1 else size // 2)


class Stem(nn.Module):
    """``max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input>>>>``: 150 -> 72 -> 35."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(3, STEM_CHANNELS, 7, 2)
        self.affine = Affine(STEM_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.affine(self.conv(x)))
        return F.max_pool2d(x, 3, 2)


class ConvBlock(nn.Module):
    """dlib's ``block``: ``affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride>>>>>``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride)
        self.affine1 = Affine(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3, 1)
        self.affine2 = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.affine1(self.conv1(x)))
        return self.affine2(self.conv2(x))


class Residual(nn.Module):
    """dlib's ``ares``: ``relu(block(x) + x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        out += x
        return torch.relu_(out)


def add_zero_filled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev`` on tensors of different shapes: top-left aligned, missing values are zero."""
    channels, rows, cols = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


class ResidualDown(nn.Module):
    """dlib's ``ares_down``: ``relu(block_stride2(x) + avg_pool<2,2,2,2>(x))``, shapes zero-filled.

    The unpadded strided paths disagree on size at 8x8 (3x3 vs 4x4) and 4x4 (1x1 vs 2x2) inputs,
    and the shortcut has fewer channels; dlib adds them top-left aligned with zeros elsewhere.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels, out_channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(add_zero_filled(self.block(x), F.avg_pool2d(x, 2, 2)))


class FaceResNet(nn.Module):
    """dlib's ResNet-29 face descriptor: (N, 3, 150, 150) normalised RGB -> (N, 128), not normalised."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem()
        levels = []
        channels = STEM_CHANNELS
        for out_channels, blocks, downsample in LEVELS:
            level: list[nn.Module] = []
            for index in range(blocks):
                if index == 0 and downsample:
                    level.append(ResidualDown(channels, out_channels))
                else:
                    level.append(Residual(out_channels))
                channels = out_channels
            levels.append(nn.Sequential(*level))
        self.levels = nn.Sequential(*levels)
        self.descriptor = nn.Linear(channels, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last runs every layer faster on CPU (max pooling ~10x) with the same values.
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.levels(self.stem(x))
        return self.descriptor(x.mean(dim=(2, 3)))  # dlib's avg_pool_everything


def recognition_network_from_arrays(arrays: dict[str, np.ndarray]) -> FaceResNet:
    """``FaceResNet`` in eval mode, holding ``arrays`` (keyed like its state dict) as its parameters."""
    # Built without storage, so torch skips randomly initialising 5.6M parameters (a sixth of
    # the load); assign=True then adopts the loaded arrays as the parameters, without a copy.
    with torch.device("meta"):
        network = FaceResNet()
    network.load_state_dict(
        {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}, assign=True
    )
    return network.eval()
