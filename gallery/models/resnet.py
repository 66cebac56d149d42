"""dlib's face recognition ResNet-29 (dlib_face_recognition_resnet_model_v1.dat) in torch.

The network mirrors the definition in dlib's ``dnn_face_recognition_ex.cpp``::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

where each level is a stack of residual blocks (``ares``) whose first block may halve the
resolution (``ares_down``). Weights are converted once from dlib's file and cached as
safetensors by ``gallery.models.weights``; nothing is loaded with pickle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gallery.errors import DlibFormatError
from gallery.models.dlib_serialize import DlibReader
from gallery.models.files import RECOGNITION_FILE, model_path
from gallery.models.weights import load_converted

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

WEIGHTS_NAME = "dlib_face_recognition_resnet_model_v1"
# SHA-256 of the safetensors file written by convert_recognition_model (checked on every load).
RECOGNITION_SHA256 = "64bd340e4d1c68d021f9833975abf497df6198a76f0f6ed22e40689b11e9348d"


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


# --- conversion from dlib's file -------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    """One layer of dlib's network as serialized, in forward (input-side first) order."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, avg_pool_everything, fc
    key: str = ""  # state-dict prefix of the torch module holding its parameters
    channels: int = 0  # output channels (con, affine, fc)
    size: int = 0  # window (con, pools)
    stride: int = 1

    @property
    def is_wrapper(self) -> bool:
        # dlib's tag and skip layers carry no settings, only a version number.
        return self.kind in ("tag", "skip")


def _dlib_layers() -> Iterator[_Layer]:
    """The network definition of dnn_face_recognition_ex.cpp, input side first, keyed like FaceResNet."""
    yield _Layer("con", "stem.conv", STEM_CHANNELS, 7, 2)
    yield _Layer("affine", "stem.affine", STEM_CHANNELS)
    yield _Layer("relu")
    yield _Layer("max_pool", size=3, stride=2)
    for level_index, (channels, blocks, downsample) in enumerate(LEVELS):
        for index in range(blocks):
            down = index == 0 and downsample
            block = f"levels.{level_index}.{index}.block"
            yield _Layer("tag")  # tag1
            yield _Layer("con", f"{block}.conv1", channels, 3, 2 if down else 1)
            yield _Layer("affine", f"{block}.affine1", channels)
            yield _Layer("relu")
            yield _Layer("con", f"{block}.conv2", channels, 3, 1)
            yield _Layer("affine", f"{block}.affine2", channels)
            if down:
                yield _Layer("tag")  # tag2
                yield _Layer("skip")  # skip1
                yield _Layer("avg_pool", size=2, stride=2)
            yield _Layer("add_prev")
            yield _Layer("relu")
    yield _Layer("avg_pool_everything")
    yield _Layer("fc", "descriptor", DESCRIPTOR_SIZE)


def _read_alias_tensor(reader: DlibReader) -> tuple[int, ...]:
    reader.expect_integer(1, "alias tensor version")
    return tuple(reader.integer() for _ in range(4))


def _read_learning_rates(reader: DlibReader) -> None:
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        reader.real()


def _read_con(reader: DlibReader, layer: _Layer, out: dict[str, np.ndarray]) -> None:
    version = reader.string()
    if version not in ("con_4", "con_5"):
        raise DlibFormatError(f"{layer.key}: expected a con_ layer, found {version!r}")
    params = reader.tensor().ravel()
    reader.expect_integer(layer.channels, f"{layer.key} filters")
    reader.expect_integer(layer.size, f"{layer.key} rows")
    reader.expect_integer(layer.size, f"{layer.key} columns")
    reader.expect_integer(layer.stride, f"{layer.key} stride y")
    reader.expect_integer(layer.stride, f"{layer.key} stride x")
    padding = 0 if layer.stride != 1 else layer.size // 2
    reader.expect_integer(padding, f"{layer.key} padding y")
    reader.expect_integer(padding, f"{layer.key} padding x")
    filters = _read_alias_tensor(reader)
    biases = _read_alias_tensor(reader)
    _read_learning_rates(reader)
    if version == "con_5" and not reader.boolean():
        raise DlibFormatError(f"{layer.key}: convolution without bias")
    weight_count = int(np.prod(filters))
    if params.size != weight_count + layer.channels or int(np.prod(biases)) != layer.channels:
        raise DlibFormatError(f"{layer.key}: {params.size} parameters do not fit filters {filters}")
    out[f"{layer.key}.weight"] = params[:weight_count].reshape(filters)  # (out, in, rows, cols) as torch
    out[f"{layer.key}.bias"] = params[weight_count:]


def _read_affine(reader: DlibReader, layer: _Layer, out: dict[str, np.ndarray]) -> None:
    version = reader.string()
    if version not in ("affine_", "affine_2"):
        raise DlibFormatError(f"{layer.key}: expected an affine_ layer, found {version!r}")
    params = reader.tensor().ravel()
    gamma = _read_alias_tensor(reader)
    beta = _read_alias_tensor(reader)
    reader.expect_integer(0, f"{layer.key} mode (0: per channel)")
    if version == "affine_2" and reader.boolean():
        raise DlibFormatError(f"{layer.key}: disabled affine layer")
    if gamma != beta or int(np.prod(gamma)) != layer.channels or params.size != 2 * layer.channels:
        raise DlibFormatError(f"{layer.key}: affine shapes {gamma}, {beta} for {layer.channels} channels")
    out[f"{layer.key}.gamma"] = params[: layer.channels]
    out[f"{layer.key}.beta"] = params[layer.channels :]


def _read_pool(reader: DlibReader, layer: _Layer, name: str) -> None:
    reader.expect_string(name)
    window = layer.size  # avg_pool_everything is stored as a 0x0 window with stride 1
    for what, value in (("rows", window), ("columns", window), ("stride y", layer.stride), ("stride x", layer.stride)):
        reader.expect_integer(value, f"{name} {what}")
    padding = 0 if layer.stride != 1 else window // 2
    reader.expect_integer(padding, f"{name} padding y")
    reader.expect_integer(padding, f"{name} padding x")


def _read_fc(reader: DlibReader, layer: _Layer, inputs: int, out: dict[str, np.ndarray]) -> None:
    version = reader.string()
    if version not in ("fc_2", "fc_3"):
        raise DlibFormatError(f"{layer.key}: expected an fc_ layer, found {version!r}")
    reader.expect_integer(layer.channels, "fc outputs")
    reader.expect_integer(inputs, "fc inputs")
    params = reader.tensor().ravel()
    weights = _read_alias_tensor(reader)
    _read_alias_tensor(reader)  # biases: empty for fc_no_bias
    reader.expect_integer(1, "fc bias mode (no bias)")
    _read_learning_rates(reader)
    if version == "fc_3" and reader.boolean():
        raise DlibFormatError("fc layer unexpectedly uses a bias")
    if weights != (inputs, layer.channels, 1, 1) or params.size != inputs * layer.channels:
        raise DlibFormatError(f"fc weights {weights} with {params.size} parameters")
    # dlib multiplies (N, inputs) by (inputs, outputs); torch's Linear stores (outputs, inputs).
    out[f"{layer.key}.weight"] = np.ascontiguousarray(params.reshape(inputs, layer.channels).T)


def _read_layer_details(reader: DlibReader, layer: _Layer, channels: int, out: dict[str, np.ndarray]) -> None:
    if layer.kind == "con":
        _read_con(reader, layer, out)
    elif layer.kind == "affine":
        _read_affine(reader, layer, out)
    elif layer.kind == "relu":
        reader.expect_string("relu_")
    elif layer.kind == "max_pool":
        _read_pool(reader, layer, "max_pool_2")
    elif layer.kind == "avg_pool" or layer.kind == "avg_pool_everything":
        _read_pool(reader, layer, "avg_pool_2")
    elif layer.kind == "add_prev":
        reader.expect_string("add_prev_")
    elif layer.kind == "fc":
        _read_fc(reader, layer, channels, out)
    else:
        raise AssertionError(f"unknown layer kind {layer.kind}")


def _read_training_state(reader: DlibReader, what: str) -> None:
    """The three flags and three gradient/cache tensors dlib saves after each layer's settings."""
    for _ in range(3):
        reader.boolean()
    for _ in range(3):
        if reader.tensor().size:
            raise DlibFormatError(f"{what}: unexpected non-empty gradient or cache tensor")


def _read_input_layer(reader: DlibReader) -> None:
    reader.expect_string("input_rgb_image_sized")
    for channel, mean in zip("RGB", INPUT_MEAN_RGB, strict=True):
        found = reader.real()
        if np.float32(found) != np.float32(mean):
            raise DlibFormatError(f"input mean {channel} is {found}, expected {mean}")
    reader.expect_integer(INPUT_SIZE, "input rows")
    reader.expect_integer(INPUT_SIZE, "input columns")


def convert_recognition_model() -> dict[str, np.ndarray]:
    """Parse dlib's recognition network file into float32 arrays keyed like ``FaceResNet``'s state dict.

    dlib writes the loss layer, then every wrapper's version number outermost first, then each
    layer's settings from the input side up. Tags and skips carry no type names, so the parse
    is driven by the known definition and must end exactly at the file's last byte.

    Raises:
        DlibFormatError: the file does not hold the network this code describes.
    """
    reader = DlibReader(model_path(RECOGNITION_FILE).read_bytes())
    reader.expect_integer(1, "loss layer version")
    reader.expect_string("loss_metric_2")
    reader.real()  # margin, training only
    reader.real()  # distance threshold, training only (0.6)

    layers = list(_dlib_layers())
    for depth, layer in enumerate(reversed(layers)):
        innermost = depth == len(layers) - 1  # the layer sitting on the input has its own record
        reader.expect_integer(1 if layer.is_wrapper else 3 if innermost else 2, f"version of {layer.kind} layer")

    arrays: dict[str, np.ndarray] = {}
    channels = 3
    _read_input_layer(reader)
    for index, layer in enumerate(layers):
        if layer.is_wrapper:
            continue
        _read_layer_details(reader, layer, channels, arrays)
        _read_training_state(reader, layer.key or layer.kind)
        if index == 0:
            reader.expect_integer(1, "sample expansion factor")
        if layer.kind in ("con", "fc"):
            channels = layer.channels
    if not reader.at_end():
        raise DlibFormatError(f"{reader.remaining} bytes left after parsing the recognition network")
    count = sum(a.size for a in arrays.values())
    if count != PARAMETER_COUNT:
        raise DlibFormatError(f"parsed {count} parameters, expected {PARAMETER_COUNT}")
    return arrays


def load_recognition_network() -> FaceResNet:
    """dlib's recognition network with its weights, in eval mode (converted once, then cached)."""
    arrays = load_converted(WEIGHTS_NAME, RECOGNITION_SHA256, convert_recognition_model)
    # Built without storage, so torch skips randomly initialising 5.6M parameters (a sixth of
    # the load); assign=True then adopts the loaded arrays as the parameters, without a copy.
    with torch.device("meta"):
        network = FaceResNet()
    network.load_state_dict(
        {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}, assign=True
    )
    return network.eval()
