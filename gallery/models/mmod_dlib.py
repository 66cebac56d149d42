"""Read dlib's ``mmod_human_face_detector.dat`` into arrays and settings for ``MMODNetwork``.

Beside the weights the file records how the detector runs: the loss layer's sliding window
and non-max suppression thresholds, and the input layer's mean and pyramid padding. They
are kept as ``settings.*`` arrays in the same cache, so one verified file holds the detector.
"""

from __future__ import annotations

import numpy as np

from gallery.errors import DlibFormatError
from gallery.models.dlib_layers import Layer, read_layer_versions, read_layers
from gallery.models.dlib_serialize import DlibReader
from gallery.models.files import DETECTOR_FILE, model_path
from gallery.models.mmod import LAYERS

DETECTOR_NAME = "mmod_human_face_detector"
# SHA-256 of the safetensors file written from convert_detector_model()'s arrays (checked on every load).
DETECTOR_SHA256 = "7e3784e02597dd2b97fa49b1122b0b257a47df0d49b140ab3de5272422efc6c7"

# input_rgb_image_pyramid's defaults, used when the file is older than the fields (it is).
DEFAULT_PYRAMID_PADDING = 10
DEFAULT_PYRAMID_OUTER_PADDING = 11


def _dlib_layers() -> list[Layer]:
    """``mmod.LAYERS`` as dlib records them: each con_, then its batch norm and relu."""
    layers = []
    for index, spec in enumerate(LAYERS):
        layers.append(Layer("con", f"conv{index}", spec.out_channels, spec.kernel, spec.stride))
        if spec.affine_relu:
            layers += [Layer("bn_con", f"affine{index}", spec.out_channels), Layer("relu")]
    return layers


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
        and ``affine{i}.beta`` for the 6 batch norms as affines, and ``settings.*`` arrays.

    Raises:
        DlibFormatError: the file does not have the structure of dlib's MMOD face detector.
    """
    reader = DlibReader(model_path(DETECTOR_FILE).read_bytes())
    arrays: dict[str, np.ndarray] = {}
    _read_loss_settings(reader, arrays)
    layers = _dlib_layers()
    read_layer_versions(reader, layers)
    _read_input_layer(reader, arrays)
    arrays.update(read_layers(reader, layers, in_channels=3))
    if not reader.at_end():
        raise DlibFormatError(f"{reader.remaining} unread bytes at the end of {DETECTOR_FILE}")
    return arrays
