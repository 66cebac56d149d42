"""Readers for the layers of a dlib DNN file (dlib/dnn/layers.h, core.h), shared by our networks.

dlib serializes a network as nested templates: ``add_layer``, ``add_tag_layer`` and
``add_skip_layer`` write their version numbers outermost first, then, because each writes its
subnetwork before itself, every layer's settings come out input side first. Tags and skips
carry no type names, so a file can only be read against the network it should hold: a list of
``Layer`` records in forward order. ``read_layers`` walks that list and checks every setting
the file repeats (filters, window, stride, padding) against it.

Parameters come back as float32 arrays named ``{key}.weight``/``{key}.bias`` (convolutions,
fully connected) and ``{key}.gamma``/``{key}.beta`` (per-channel affine), in torch's layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gallery.errors import DlibFormatError
from gallery.models.dlib_serialize import DlibReader

# Kinds of layer. "affine" is stored as dlib's affine_; "bn_con" is a training-time batch norm
# that dlib (and we) turn into an affine on load. "tag" and "skip" are wrappers: no settings.
LAYER_KINDS = ("con", "affine", "bn_con", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip")


@dataclass(frozen=True)
class Layer:
    """One layer of a dlib network as its file records it."""

    kind: str  # one of LAYER_KINDS
    key: str = ""  # name prefix of its parameter arrays (con, affine, bn_con, fc)
    channels: int = 0  # outputs (con, affine, bn_con, fc)
    size: int = 0  # window (con, pools); avg_pool_everything is a 0x0 window with stride 1
    stride: int = 1

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"unknown dlib layer kind {self.kind!r}")

    @property
    def is_wrapper(self) -> bool:
        return self.kind in ("tag", "skip")

    @property
    def padding(self) -> int:
        # dlib's default for convolutions and pools: strided windows are unpadded.
        return 0 if self.stride != 1 else self.size // 2

    @property
    def name(self) -> str:
        return self.key or self.kind


def read_layer_versions(reader: DlibReader, layers: Sequence[Layer]) -> None:
    """The wrappers' version numbers, outermost (output side) first.

    ``add_layer`` is version 2, except around the layer sitting on the input (version 3, it
    also records a sample expansion factor); tags and skips are version 1.
    """
    for depth, layer in enumerate(reversed(layers)):
        innermost = depth == len(layers) - 1
        reader.expect_integer(1 if layer.is_wrapper else 3 if innermost else 2, f"version of {layer.name} layer")


def read_layers(reader: DlibReader, layers: Sequence[Layer], in_channels: int) -> dict[str, np.ndarray]:
    """Every layer's settings and parameters, input side first, after the input layer's record.

    Args:
        reader: positioned just after the input layer's settings.
        layers: the network in forward order, wrappers included.
        in_channels: channels the input layer produces.
    """
    arrays: dict[str, np.ndarray] = {}
    channels = in_channels
    for index, layer in enumerate(layers):
        if layer.is_wrapper:
            continue
        _read_settings(reader, layer, channels, arrays)
        _read_record_tail(reader, layer, input_layer=index == 0)
        if layer.kind in ("con", "fc"):
            channels = layer.channels
    return arrays


def _read_settings(reader: DlibReader, layer: Layer, in_channels: int, out: dict[str, np.ndarray]) -> None:
    if layer.kind == "con":
        _read_con(reader, layer, in_channels, out)
    elif layer.kind == "affine":
        _read_affine(reader, layer, out)
    elif layer.kind == "bn_con":
        _read_bn_con_as_affine(reader, layer, out)
    elif layer.kind == "relu":
        _read_relu(reader)
    elif layer.kind == "max_pool":
        _read_pool(reader, layer, "max_pool_2")
    elif layer.kind == "avg_pool":
        _read_pool(reader, layer, "avg_pool_2")
    elif layer.kind == "add_prev":
        reader.expect_string("add_prev_")
    elif layer.kind == "fc":
        _read_fc(reader, layer, in_channels, out)


def _read_record_tail(reader: DlibReader, layer: Layer, input_layer: bool) -> None:
    """What add_layer writes after a layer's settings: three flags and three empty work tensors."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output_and_gradient_disabled
        reader.boolean()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final on the input layer)
        if reader.tensor().size:
            raise DlibFormatError(f"{layer.name}: unexpected non-empty gradient or cache tensor")
    if input_layer:
        reader.expect_integer(1, "sample expansion factor")


def _read_alias_tensor(reader: DlibReader) -> tuple[int, ...]:
    """The shape of a view into a layer's parameter tensor."""
    reader.expect_integer(1, "alias tensor version")
    return tuple(reader.integer() for _ in range(4))


def _skip_learning_rates(reader: DlibReader) -> None:
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        reader.real()


def _read_version(reader: DlibReader, layer: Layer, versions: tuple[str, ...]) -> str:
    version = reader.string()
    if version not in versions:
        raise DlibFormatError(f"{layer.name}: expected a {versions[0]} layer, found {version!r}")
    return version


def _read_con(reader: DlibReader, layer: Layer, in_channels: int, out: dict[str, np.ndarray]) -> None:
    version = _read_version(reader, layer, ("con_4", "con_5", "con_6"))
    params = reader.tensor().ravel()
    reader.expect_integer(layer.channels, f"{layer.name} filters")
    reader.expect_integer(layer.size, f"{layer.name} rows")
    reader.expect_integer(layer.size, f"{layer.name} columns")
    reader.expect_integer(layer.stride, f"{layer.name} stride y")
    reader.expect_integer(layer.stride, f"{layer.name} stride x")
    reader.expect_integer(layer.padding, f"{layer.name} padding y")
    reader.expect_integer(layer.padding, f"{layer.name} padding x")
    filters = _read_alias_tensor(reader)
    biases = _read_alias_tensor(reader)
    _skip_learning_rates(reader)
    if version in ("con_5", "con_6") and not reader.boolean():
        raise DlibFormatError(f"{layer.name}: convolution without bias")
    if version == "con_6" and reader.boolean():
        raise DlibFormatError(f"{layer.name}: convolution with a fused relu")
    weight_shape = (layer.channels, in_channels, layer.size, layer.size)
    weight_count = int(np.prod(weight_shape))
    if filters != weight_shape or biases != (1, layer.channels, 1, 1) or params.size != weight_count + layer.channels:
        raise DlibFormatError(f"{layer.name}: filters {filters}, biases {biases} and {params.size} parameters")
    out[f"{layer.key}.weight"] = params[:weight_count].reshape(weight_shape)  # (out, in, rows, cols) as torch
    out[f"{layer.key}.bias"] = params[weight_count:]


def _read_affine(reader: DlibReader, layer: Layer, out: dict[str, np.ndarray]) -> None:
    version = _read_version(reader, layer, ("affine_", "affine_2"))
    params = reader.tensor().ravel()
    gamma = _read_alias_tensor(reader)
    beta = _read_alias_tensor(reader)
    reader.expect_integer(0, f"{layer.name} mode (0: per channel)")
    if version == "affine_2" and reader.boolean():
        raise DlibFormatError(f"{layer.name}: disabled affine layer")
    if gamma != beta or int(np.prod(gamma)) != layer.channels or params.size != 2 * layer.channels:
        raise DlibFormatError(f"{layer.name}: affine shapes {gamma}, {beta} for {layer.channels} channels")
    out[f"{layer.key}.gamma"] = params[: layer.channels]
    out[f"{layer.key}.beta"] = params[layer.channels :]


def _read_bn_con_as_affine(reader: DlibReader, layer: Layer, out: dict[str, np.ndarray]) -> None:
    """A ``bn_con2`` layer turned into affine gamma and beta exactly as dlib's affine_(bn_) does."""
    reader.expect_string("bn_con2")
    channels = layer.channels
    params = reader.tensor().ravel()
    for _ in range(2):  # gamma and beta: views into params
        if _read_alias_tensor(reader) != (1, channels, 1, 1):
            raise DlibFormatError(f"{layer.name}: gamma/beta shape is not {channels} channels")
    reader.tensor()  # means (training batch statistics)
    reader.tensor()  # invstds
    running_means = reader.tensor().ravel()
    running_variances = reader.tensor().ravel()
    reader.integer()  # num_updates
    reader.integer()  # running_stats_window_size
    _skip_learning_rates(reader)
    eps = np.float32(reader.real())  # dlib adds eps to a float matrix, so it is rounded to float
    if params.size != 2 * channels or running_means.size != channels or running_variances.size != channels:
        raise DlibFormatError(f"{layer.name}: batch norm parameters do not fit {channels} channels")
    gamma = params[:channels] / np.sqrt(running_variances + eps)
    beta = params[channels:] - gamma * running_means
    out[f"{layer.key}.gamma"] = gamma.astype(np.float32)
    out[f"{layer.key}.beta"] = beta.astype(np.float32)


def _read_relu(reader: DlibReader) -> None:
    version = reader.string()
    if version == "relu_2":
        if reader.boolean():
            raise DlibFormatError("disabled relu layer")
    elif version != "relu_":
        raise DlibFormatError(f"expected a relu_ layer, found {version!r}")


def _read_pool(reader: DlibReader, layer: Layer, version: str) -> None:
    reader.expect_string(version)
    for what, value in (
        ("rows", layer.size),
        ("columns", layer.size),
        ("stride y", layer.stride),
        ("stride x", layer.stride),
    ):
        reader.expect_integer(value, f"{version} {what}")
    reader.expect_integer(layer.padding, f"{version} padding y")
    reader.expect_integer(layer.padding, f"{version} padding x")


def _read_fc(reader: DlibReader, layer: Layer, inputs: int, out: dict[str, np.ndarray]) -> None:
    """A fully connected layer without bias (``fc_no_bias``), the only kind our networks use."""
    version = _read_version(reader, layer, ("fc_2", "fc_3"))
    reader.expect_integer(layer.channels, f"{layer.name} outputs")
    reader.expect_integer(inputs, f"{layer.name} inputs")
    params = reader.tensor().ravel()
    weights = _read_alias_tensor(reader)
    _read_alias_tensor(reader)  # biases: empty without bias
    reader.expect_integer(1, f"{layer.name} bias mode (1: no bias)")
    _skip_learning_rates(reader)
    if version == "fc_3" and reader.boolean():
        raise DlibFormatError(f"{layer.name}: fully connected layer unexpectedly uses a bias")
    if weights != (inputs, layer.channels, 1, 1) or params.size != inputs * layer.channels:
        raise DlibFormatError(f"{layer.name}: fc weights {weights} with {params.size} parameters")
    # dlib multiplies (N, inputs) by (inputs, outputs); torch's Linear stores (outputs, inputs).
    out[f"{layer.key}.weight"] = np.ascontiguousarray(params.reshape(inputs, layer.channels).T)
