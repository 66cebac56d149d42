"""dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) as a torch module.

The network is the one in dlib's ``dnn_mmod_face_detection_ex.cpp`` / ``cnn_face_detector.cpp``::

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = 3 x (con 5x5 stride 2 -> affine -> relu), 16, 32, 32 filters
    rcon5       = con 5x5 stride 1 (45 filters) -> affine -> relu

The file stores training-time ``bn_con`` layers; dlib turns them into ``affine`` on load and so
do we (in float32, as dlib does). The detector's settings that the file records (sliding window
size, non-max suppression thresholds, input mean, pyramid padding) are read from it and kept
with the weights, so the detector uses exactly what dlib would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gallery.errors import DlibFormatError
from gallery.models.dlib_serialize import DlibReader
from gallery.models.files import DETECTOR_FILE, model_path
from gallery.models.weights import load_converted

DETECTOR_NAME = "mmod_human_face_detector"
# SHA-256 of the safetensors file written by convert_detector_model() (see weights.load_converted).
DETECTOR_SHA256 = "7e3784e02597dd2b97fa49b1122b0b257a47df0d49b140ab3de5272422efc6c7"

# Each pyramid level is pyramid_down<6>: floor(5/6 of the previous level's rows and columns).
PYRAMID_DOWN_N = 6
PYRAMID_RATE = (PYRAMID_DOWN_N - 1.0) / PYRAMID_DOWN_N
# pyramid_down<6>::point_up: a point one level down sits at p * 6/5 + 0.3 one level up.
PYRAMID_UP_RATIO = PYRAMID_DOWN_N / (PYRAMID_DOWN_N - 1.0)
PYRAMID_UP_OFFSET = 0.3
# dlib stops adding pyramid levels once one would be shorter than this (image_pyramid.h).
PYRAMID_MIN_HEIGHT = 5
# input_rgb_image_pyramid's defaults, used when the file is older than the fields (it is).
DEFAULT_PYRAMID_PADDING = 10
DEFAULT_PYRAMID_OUTER_PADDING = 11


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
# and the converter checks it.
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

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy converted dlib weights in, folding each affine (x*gamma + beta) into its conv."""
        convs: list[nn.Conv2d | ScoreHead] = [block.conv for block in self.downsampler]
        convs += [block.conv for block in self.features] + [self.score]
        with torch.no_grad():
            for index, conv in enumerate(convs):
                weight = torch.from_numpy(arrays[f"conv{index}.weight"])
                bias = torch.from_numpy(arrays[f"conv{index}.bias"])
                if LAYERS[index].affine_relu:
                    gamma = torch.from_numpy(arrays[f"affine{index}.gamma"])
                    beta = torch.from_numpy(arrays[f"affine{index}.beta"])
                    weight = weight * gamma[:, None, None, None]
                    bias = bias * gamma + beta
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)


# ---------------------------------------------------------------------------------------------
# Conversion from dlib's file


def _read_layer_record_tail(reader: DlibReader, input_layer: bool) -> None:
    """Skip what add_layer writes after a layer's own settings (flags and empty work tensors)."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output_and_gradient_disabled
        reader.boolean()
    reader.tensor()  # x_grad
    reader.tensor()  # cached_output
    reader.tensor()  # params_grad, or grad_final for the layer sitting on the input
    if input_layer:
        reader.integer()  # _sample_expansion_factor (add_layer version 3)


def _read_alias_tensor(reader: DlibReader) -> tuple[int, int, int, int]:
    reader.expect_integer(1, "alias_tensor version")
    return (reader.integer(), reader.integer(), reader.integer(), reader.integer())


def _read_con(reader: DlibReader, spec: ConvSpec) -> tuple[np.ndarray, np.ndarray]:
    """A ``con_`` layer: returns (weight OIHW, bias), checking its geometry against ``spec``."""
    version = reader.string()
    if version not in ("con_4", "con_5", "con_6"):
        raise DlibFormatError(f"unexpected con_ version {version!r}")
    params = reader.tensor().reshape(-1)
    reader.expect_integer(spec.out_channels, "con_ num_filters")
    reader.expect_integer(spec.kernel, "con_ rows")
    reader.expect_integer(spec.kernel, "con_ columns")
    reader.expect_integer(spec.stride, "con_ stride_y")
    reader.expect_integer(spec.stride, "con_ stride_x")
    reader.expect_integer(spec.padding, "con_ padding_y")
    reader.expect_integer(spec.padding, "con_ padding_x")
    filters_shape = _read_alias_tensor(reader)
    biases_shape = _read_alias_tensor(reader)
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    use_bias = reader.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6" and reader.boolean():
        raise DlibFormatError("con_ with a fused relu is not expected in this model")
    weight_shape = (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)
    if filters_shape != weight_shape or not use_bias or biases_shape != (1, spec.out_channels, 1, 1):
        raise DlibFormatError(f"con_ shapes {filters_shape}, {biases_shape} do not match {spec}")
    count = int(np.prod(weight_shape))
    if params.size != count + spec.out_channels:
        raise DlibFormatError(f"con_ holds {params.size} parameters, expected {count + spec.out_channels}")
    return params[:count].reshape(weight_shape), params[count:].copy()


def _read_bn_con_as_affine(reader: DlibReader, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``bn_con2`` layer turned into affine (gamma, beta) exactly as dlib's affine_(bn_) does."""
    reader.expect_string("bn_con2")
    params = reader.tensor().reshape(-1)
    for _ in range(2):  # gamma and beta alias_tensors: views into params
        if _read_alias_tensor(reader) != (1, channels, 1, 1):
            raise DlibFormatError("bn_con2 gamma/beta shape mismatch")
    reader.tensor()  # means (training batch statistics)
    reader.tensor()  # invstds
    running_means = reader.tensor().reshape(-1)
    running_variances = reader.tensor().reshape(-1)
    reader.integer()  # num_updates
    reader.integer()  # running_stats_window_size
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    eps = np.float32(reader.real())  # dlib adds eps to a float matrix, so it is rounded to float
    if params.size != 2 * channels or running_means.size != channels or running_variances.size != channels:
        raise DlibFormatError("bn_con2 parameter count mismatch")
    gamma = params[:channels] / np.sqrt(running_variances + eps)
    beta = params[channels:] - gamma * running_means
    return gamma.astype(np.float32), beta.astype(np.float32)


def _read_relu(reader: DlibReader) -> None:
    version = reader.string()
    if version == "relu_2":
        if reader.boolean():
            raise DlibFormatError("disabled relu is not expected in this model")
    elif version != "relu_":
        raise DlibFormatError(f"unexpected relu version {version!r}")


def _read_loss_settings(reader: DlibReader, arrays: dict[str, np.ndarray]) -> None:
    """loss_mmod_ and its mmod_options: the sliding window and the NMS thresholds."""
    reader.expect_integer(1, "add_loss_layer version")
    reader.expect_string("loss_mmod_")
    version = reader.integer()
    if not 1 <= version <= 4:
        raise DlibFormatError(f"unexpected mmod_options version {version}")
    if version == 1:
        windows = [(reader.integer(), reader.integer())]
    else:
        windows = []
        for _ in range(reader.integer()):
            window_version = reader.integer()
            windows.append((reader.integer(), reader.integer()))
            if window_version == 2:
                reader.string()  # label
    if len(windows) != 1:
        raise DlibFormatError(f"expected one detector window, found {len(windows)}")
    reader.real()  # loss_per_false_alarm
    reader.real()  # loss_per_missed_target
    reader.real()  # truth_match_iou_threshold
    nms = (reader.real(), reader.real())  # overlaps_nms: iou, percent covered
    reader.real(), reader.real()  # overlaps_ignore
    if version >= 3:
        reader.integer()  # assume_image_pyramid (uint8)
    if version >= 4 and reader.boolean():
        raise DlibFormatError("bounding box regression is not supported")
    if version >= 4:
        reader.real()  # bbr_lambda
    arrays["settings.window"] = np.array(windows[0], dtype=np.int64)
    arrays["settings.nms"] = np.array(nms, dtype=np.float64)


def _read_input_layer(reader: DlibReader, arrays: dict[str, np.ndarray]) -> None:
    version = reader.string()
    if version not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise DlibFormatError(f"unexpected input layer {version!r}")
    mean = np.array([reader.real() for _ in range(3)], dtype=np.float32)  # dlib keeps them as float
    if version == "input_rgb_image_pyramid2":
        padding = (reader.integer(), reader.integer())
    else:
        padding = (DEFAULT_PYRAMID_PADDING, DEFAULT_PYRAMID_OUTER_PADDING)
    arrays["settings.input_mean"] = mean
    arrays["settings.pyramid_padding"] = np.array(padding, dtype=np.int64)


def convert_detector_model() -> dict[str, np.ndarray]:
    """Parse ``mmod_human_face_detector.dat`` into named float32 arrays and detector settings.

    Returns:
        ``conv{i}.weight`` (OIHW) and ``conv{i}.bias`` for the 7 convolutions, ``affine{i}.gamma``
        and ``affine{i}.beta`` for the 6 folded batch norms, and ``settings.*`` arrays.

    Raises:
        DlibFormatError: the file does not have the structure of dlib's MMOD face detector.
    """
    reader = DlibReader(model_path(DETECTOR_FILE).read_bytes())
    arrays: dict[str, np.ndarray] = {}
    _read_loss_settings(reader, arrays)

    # add_layer writes its subnetwork before its own settings, so the file holds every
    # wrapper's version first (outside-in), then the layers' settings from the input up.
    layer_kinds: list[tuple[str, int]] = []
    for index, spec in enumerate(LAYERS):
        layer_kinds.append(("con", index))
        if spec.affine_relu:
            layer_kinds += [("affine", index), ("relu", index)]
    for _ in range(len(layer_kinds) - 1):
        reader.expect_integer(2, "add_layer version")
    reader.expect_integer(3, "input add_layer version")
    _read_input_layer(reader, arrays)

    for position, (kind, index) in enumerate(layer_kinds):
        spec = LAYERS[index]
        if kind == "con":
            arrays[f"conv{index}.weight"], arrays[f"conv{index}.bias"] = _read_con(reader, spec)
        elif kind == "affine":
            arrays[f"affine{index}.gamma"], arrays[f"affine{index}.beta"] = _read_bn_con_as_affine(
                reader, spec.out_channels
            )
        else:
            _read_relu(reader)
        _read_layer_record_tail(reader, input_layer=position == 0)

    if not reader.at_end():
        raise DlibFormatError(f"{reader.remaining} unread bytes at the end of {DETECTOR_FILE}")
    return arrays


# ---------------------------------------------------------------------------------------------
# Lazy, once-per-process loading

_lock = threading.Lock()
_loaded: tuple[MMODNetwork, DetectorSettings] | None = None


def load_detector_network() -> tuple[MMODNetwork, DetectorSettings]:
    """The detector network (eval, channels-last, weights loaded) and its settings; loaded once per process."""
    global _loaded
    with _lock:
        if _loaded is None:
            arrays = load_converted(DETECTOR_NAME, DETECTOR_SHA256, convert_detector_model)
            network = MMODNetwork()
            network.load_arrays(arrays)
            network.to(memory_format=torch.channels_last)
            network.eval()
            network.requires_grad_(False)
            _loaded = (network, DetectorSettings.from_arrays(arrays))
        return _loaded
