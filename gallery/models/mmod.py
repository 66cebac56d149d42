"""dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) as a torch module.

The network is the one in dlib's ``dnn_mmod_face_detection_ex.cpp`` / ``cnn_face_detector.cpp``::

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = 3 x (con 5x5 stride 2 -> affine -> relu), 16, 32, 32 filters
    rcon5       = con 5x5 stride 1 (45 filters) -> affine -> relu

The file stores training-time ``bn_con`` layers; dlib turns them into ``affine`` on load and so
do we (in float32, as dlib does). The detector's settings that the file records (sliding window
size, non-max suppression thresholds, input mean, pyramid padding) are read from it and kept
with the weights, so the detector uses exactly what dlib would.

This module is the network and its settings; ``mmod_dlib`` reads dlib's file into arrays and
``pretrained`` caches and loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Each pyramid level is pyramid_down<6>: floor(5/6 of the previous level's rows and columns).
PYRAMID_DOWN_N = 6
PYRAMID_RATE = (PYRAMID_DOWN_N - 1.0) / PYRAMID_DOWN_N
# pyramid_down<6>::point_up: a point one level down sits at p * 6/5 + 0.3 one level up.
PYRAMID_UP_RATIO = PYRAMID_DOWN_N / (PYRAMID_DOWN_N - 1.0)
PYRAMID_UP_OFFSET = 0.3
# dlib stops adding pyramid levels once one would be shorter than this (image_pyramid.h).
PYRAMID_MIN_HEIGHT = 5


@dataclass(frozen=True)
class ConvSpec:
    """One dlib ``con_`` layer: filters, kernel, stride, padding, and whether affine+relu follow."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    affine_relu: bool


# Input side first. Padding is dlib's default (stride != 1 ? 0 : size/2); the file repeats it
# and the reader checks it.
LAYERS: tuple[ConvSpec, ...] = (
    ConvSpec(3, 16, 5, 2, 0, True),
    ConvSpec(16, 32, 5, 2, 0, True),
    ConvSpec(32, 32, 5, 2, 0, True),
    ConvSpec(32, 45, 5, 1, 2, True),
    ConvSpec(45, 45, 5, 1, 2, True),
    ConvSpec(45, 45, 5, 1, 2, True),
    ConvSpec(45, 1, 9, 1, 4, False),
)


def output_to_input_mapping(layers: tuple[ConvSpec, ...] = LAYERS) -> tuple[int, int]:
    """(scale, offset) such that output cell c sits at input pixel scale*c + offset.

    Composes each con_ layer's map_output_to_input (p*stride - padding + kernel/2) from the
    output back to the input; for this network it gives 8c + 14.
    """
    scale, offset = 1, 0
    for spec in reversed(layers):
        # p_in = p_out*stride - padding + kernel//2, applied to p_out = scale*c + offset
        scale, offset = scale * spec.stride, offset * spec.stride - spec.padding + spec.kernel // 2
    return scale, offset


@dataclass(frozen=True)
class DetectorSettings:
    """What the model file says about how to run and decode the network."""

    window_width: int
    window_height: int
    nms_iou_threshold: float
    nms_covered_threshold: float
    input_mean: tuple[float, float, float]  # RGB, float32 values as dlib stores them
    pyramid_padding: int
    pyramid_outer_padding: int

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DetectorSettings:
        """Settings from the ``settings.*`` arrays of a converted model."""
        window = arrays["settings.window"]
        nms = arrays["settings.nms"]
        mean = arrays["settings.input_mean"]
        padding = arrays["settings.pyramid_padding"]
        return cls(
            window_width=int(window[0]),
            window_height=int(window[1]),
            nms_iou_threshold=float(nms[0]),
            nms_covered_threshold=float(nms[1]),
            input_mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            pyramid_padding=int(padding[0]),
            pyramid_outer_padding=int(padding[1]),
        )


# ---------------------------------------------------------------------------------------------
# The network


class ConvAffineRelu(nn.Module):
    """dlib's ``relu<affine<con<...>>>``: the affine is folded into the convolution."""

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.conv(x))  # in place: the conv output is ours, and big


class ScoreHead(nn.Module):
    """dlib's last layer, a 9x9 convolution to one score map, run as a projection then a fold.

    oneDNN runs a convolution with a single output channel at a fraction of its usual speed
    (it took 10 ms of the network's 56 on one core); projecting each pixel onto the 81 kernel
    taps is one matrix product, and ``fold`` sums the taps' shifted maps (about 4 ms). Only
    the order of the float32 additions differs from the convolution.
    """

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__()
        if spec.out_channels != 1 or spec.stride != 1 or spec.padding != spec.kernel // 2:
            raise ValueError(f"ScoreHead needs one output map and 'same' padding, got {spec}")
        self.kernel = spec.kernel
        self.weight = nn.Parameter(torch.zeros(1, spec.in_channels, spec.kernel, spec.kernel))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _batch, channels, rows, cols = x.shape
        # fold adds tap (ky, kx) of input pixel p to output pixel p + (ky, kx) - 4; a
        # convolution reads output p from input p - (ky, kx) + 4: the taps come flipped.
        taps = self.weight[0].flip(1, 2).reshape(channels, self.kernel * self.kernel).t()
        projected = torch.matmul(taps, x.flatten(2))  # (batch, 81, rows*cols)
        scores = F.fold(projected, (rows, cols), self.kernel, padding=self.kernel // 2)
        return scores + self.bias.view(1, 1, 1, 1)


class MMODNetwork(nn.Module):
    """The detector's fully convolutional network: tiled pyramid image -> one score map."""

    def __init__(self) -> None:
        super().__init__()
        self.downsampler = nn.Sequential(*(ConvAffineRelu(spec) for spec in LAYERS[:3]))
        self.features = nn.Sequential(*(ConvAffineRelu(spec) for spec in LAYERS[3:6]))
        self.score = ScoreHead(LAYERS[6])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(self.downsampler(x)))


# Where each of LAYERS' convolution lives in MMODNetwork's state dict.
_CONV_KEYS = (*(f"downsampler.{i}.conv" for i in range(3)), *(f"features.{i}.conv" for i in range(3)), "score")


def detector_network_from_arrays(arrays: dict[str, np.ndarray]) -> MMODNetwork:
    """``MMODNetwork`` in eval mode, channels-last, from converted dlib arrays (see ``mmod_dlib``).

    Each affine (x*gamma + beta) is folded into the convolution before it. The network is
    built without storage and adopts the folded tensors (assign=True), so torch never fills
    parameters it would overwrite.
    """
    state: dict[str, torch.Tensor] = {}
    for index, key in enumerate(_CONV_KEYS):
        weight = torch.from_numpy(arrays[f"conv{index}.weight"])
        bias = torch.from_numpy(arrays[f"conv{index}.bias"])
        if LAYERS[index].affine_relu:
            gamma = torch.from_numpy(arrays[f"affine{index}.gamma"])
            beta = torch.from_numpy(arrays[f"affine{index}.beta"])
            weight = weight * gamma[:, None, None, None]
            bias = bias * gamma + beta
        # Channels-last runs every convolution faster on CPU.
        state[f"{key}.weight"] = weight.contiguous(memory_format=torch.channels_last)
        state[f"{key}.bias"] = bias
    with torch.device("meta"):
        network = MMODNetwork()
    network.load_state_dict(state, assign=True)
    return network.eval().requires_grad_(False)
