"""Read dlib's ``dlib_face_recognition_resnet_model_v1.dat`` into arrays for ``FaceResNet``.

dlib writes the loss layer, then every wrapper's version number outermost first, then each
layer's settings from the input side up. Tags and skips carry no type names, so the parse is
driven by the network's definition (``_dlib_layers``, built from ``resnet.LEVELS``) and must
end exactly at the file's last byte.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gallery.errors import DlibFormatError
from gallery.models.dlib_layers import Layer, read_layer_versions, read_layers
from gallery.models.dlib_serialize import DlibReader
from gallery.models.files import RECOGNITION_FILE, model_path
from gallery.models.resnet import DESCRIPTOR_SIZE, INPUT_MEAN_RGB, INPUT_SIZE, LEVELS, PARAMETER_COUNT, STEM_CHANNELS

WEIGHTS_NAME = "dlib_face_recognition_resnet_model_v1"
# SHA-256 of the safetensors file written from convert_recognition_model's arrays (checked on every load).
RECOGNITION_SHA256 = "64bd340e4d1c68d021f9833975abf497df6198a76f0f6ed22e40689b11e9348d"


def _dlib_layers() -> Iterator[Layer]:
    """The network of dnn_face_recognition_ex.cpp, input side first, keyed like ``FaceResNet``."""
    yield Layer("con", "stem.conv", STEM_CHANNELS, 7, 2)
    yield Layer("affine", "stem.affine", STEM_CHANNELS)
    yield Layer("relu")
    yield Layer("max_pool", size=3, stride=2)
    for level_index, (channels, blocks, downsample) in enumerate(LEVELS):
        for index in range(blocks):
            down = index == 0 and downsample
            block = f"levels.{level_index}.{index}.block"
            yield Layer("tag")  # tag1
            yield Layer("con", f"{block}.conv1", channels, 3, 2 if down else 1)
            yield Layer("affine", f"{block}.affine1", channels)
            yield Layer("relu")
            yield Layer("con", f"{block}.conv2", channels, 3, 1)
            yield Layer("affine", f"{block}.affine2", channels)
            if down:
                yield Layer("tag")  # tag2
                yield Layer("skip")  # skip1
                yield Layer("avg_pool", size=2, stride=2)
            yield Layer("add_prev")
            yield Layer("relu")
    yield Layer("avg_pool", size=0, stride=1)  # avg_pool_everything
    yield Layer("fc", "descriptor", DESCRIPTOR_SIZE)


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

    Raises:
        DlibFormatError: the file does not hold the network this code describes.
    """
    reader = DlibReader(model_path(RECOGNITION_FILE).read_bytes())
    reader.expect_integer(1, "loss layer version")
    reader.expect_string("loss_metric_2")
    reader.real()  # margin, training only
    reader.real()  # distance threshold, training only (0.6)

    layers = list(_dlib_layers())
    read_layer_versions(reader, layers)
    _read_input_layer(reader)
    arrays = read_layers(reader, layers, in_channels=3)
    if not reader.at_end():
        raise DlibFormatError(f"{reader.remaining} bytes left after parsing the recognition network")
    count = sum(a.size for a in arrays.values())
    if count != PARAMETER_COUNT:
        raise DlibFormatError(f"parsed {count} parameters, expected {PARAMETER_COUNT}")
    return arrays
