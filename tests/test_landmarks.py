"""The 5-point shape predictor: faithful conversion of dlib's file, landmarks identical to dlib's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery.errors import DlibFormatError
from gallery.models.pretrained import load_landmark_model
from gallery.models.shape_predictor import parse_shape_predictor
from gallery.vision.landmarks import LandmarkPredictor, _box_transforms

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = Path(__file__).resolve().parent.parent / "data"
# Written by scripts/dlib_reference.py and scripts/dlib_landmark_chip_cases.py with dlib 20.0.1.
REFERENCE = FIXTURES / "dlib_reference.npz"
HARD_CASES = FIXTURES / "dlib_landmark_chip_cases.npz"


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


@pytest.fixture(scope="module")
def predictor() -> LandmarkPredictor:
    return LandmarkPredictor()


# -- the model file -------------------------------------------------------------------------


def _dlib_int(value: int) -> bytes:
    magnitude = abs(value)
    payload = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
    return bytes([(0x80 if value < 0 else 0) | len(payload)]) + payload


def _dlib_float(value: float) -> bytes:
    mantissa, exponent = math.frexp(float(np.float32(value)))
    return _dlib_int(int(mantissa * 2**24)) + _dlib_int(exponent - 24)


def _tiny_predictor_file(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    """A shape predictor with 2 cascades of 3 trees over 4 pixels, serialized as dlib does."""
    cascades, trees, pixels = 2, 3, 4
    expected = {
        "initial_shape": rng.random(10).astype(np.float32),
        "split_idx1": rng.integers(0, pixels, (cascades, trees, 15)).astype(np.int32),
        "split_idx2": rng.integers(0, pixels, (cascades, trees, 15)).astype(np.int32),
        "split_thresh": rng.normal(0, 20, (cascades, trees, 15)).astype(np.float32),
        "leaf_values": rng.normal(0, 0.01, (cascades, trees, 16, 10)).astype(np.float32),
        "anchor_idx": rng.integers(0, 5, (cascades, pixels)).astype(np.int32),
        "deltas": rng.normal(0, 0.1, (cascades, pixels, 2)).astype(np.float32),
    }
    out = [_dlib_int(1), _dlib_int(-10), _dlib_int(-1)]
    out += [_dlib_float(v) for v in expected["initial_shape"]]
    out.append(_dlib_int(cascades))
    for c in range(cascades):
        out.append(_dlib_int(trees))
        for t in range(trees):
            out.append(_dlib_int(15))
            for n in range(15):
                out += [
                    _dlib_int(int(expected["split_idx1"][c, t, n])),
                    _dlib_int(int(expected["split_idx2"][c, t, n])),
                    _dlib_float(expected["split_thresh"][c, t, n]),
                ]
            out.append(_dlib_int(16))
            for leaf in expected["leaf_values"][c, t]:
                out += [_dlib_int(-10), _dlib_int(-1)] + [_dlib_float(v) for v in leaf]
    out.append(_dlib_int(cascades))
    for c in range(cascades):
        out.append(_dlib_int(pixels))
        out += [_dlib_int(int(a)) for a in expected["anchor_idx"][c]]
    out.append(_dlib_int(cascades))
    for c in range(cascades):
        out.append(_dlib_int(pixels))
        out += [_dlib_float(v) for v in expected["deltas"][c].ravel()]
    return b"".join(out), expected


def test_parser_reads_every_field_of_a_serialized_predictor() -> None:
    data, expected = _tiny_predictor_file(np.random.default_rng(0))
    parsed = parse_shape_predictor(data)
    assert parsed.keys() == expected.keys()
    for name, array in expected.items():
        assert parsed[name].dtype == array.dtype, name
        np.testing.assert_array_equal(parsed[name], array, err_msg=name)


def test_parser_rejects_truncated_or_trailing_bytes() -> None:
    data, _ = _tiny_predictor_file(np.random.default_rng(1))
    with pytest.raises(DlibFormatError):
        parse_shape_predictor(data[:-1])
    with pytest.raises(DlibFormatError):
        parse_shape_predictor(data + _dlib_int(0))


def test_parser_rejects_another_version() -> None:
    data, _ = _tiny_predictor_file(np.random.default_rng(2))
    with pytest.raises(DlibFormatError, match="version"):
        parse_shape_predictor(_dlib_int(2) + data[2:])


def test_model_converts_to_the_recorded_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLERY_CACHE_DIR", str(tmp_path))
    arrays = load_landmark_model()  # raises WeightsMismatch unless the conversion is reproducible
    assert (tmp_path / "shape_predictor_5_face_landmarks.safetensors").is_file()
    assert arrays["split_idx1"].shape == (15, 500, 15)
    assert arrays["leaf_values"].shape == (15, 500, 16, 10)
    assert arrays["deltas"].shape == (15, 800, 2)
    assert arrays["anchor_idx"].max() == 4
    assert load_landmark_model().keys() == arrays.keys()  # and reloads from the cache


# -- arithmetic that has to be dlib's --------------------------------------------------------


def test_box_transform_is_dlibs_pseudo_inverse_to_the_last_bit() -> None:
    # dlib 20.0.1's impl::unnormalizing_tform(rectangle(37, 52, 187, 203)), printed with %a:
    # not the exact (150, 151) scaling, and those last bits decide .5 rounding ties.
    m0, m1, b = _box_transforms(np.array([[37, 52, 187, 203]]))
    found = [m0[0, 0, 0], m1[0, 0, 0], m0[0, 1, 0], m1[0, 1, 0], b[0, 0, 0], b[0, 1, 0]]
    expected = ["0x1.2bffffffffffep+7", "0x1.4p-43", "-0x1p-45", "0x1.2e00000000002p+7",
                "0x1.2800000000007p+5", "0x1.a000000000005p+5"]  # fmt: skip
    assert found == [float.fromhex(v) for v in expected]


def test_numpy_sums_tree_outputs_in_order_like_dlib() -> None:
    # The predictor relies on np.add.reduce over a non-innermost axis adding rows one after
    # another in float32, as dlib does; pairwise summation would move landmarks.
    rng = np.random.default_rng(3)
    terms = (rng.standard_normal((3, 501, 10)) * 0.01).astype(np.float32)
    sequential = terms[:, 0].copy()
    for row in range(1, terms.shape[1]):
        sequential += terms[:, row]
    np.testing.assert_array_equal(np.add.reduce(terms, axis=1), sequential)


# -- parity with dlib --------------------------------------------------------------------------


def test_landmarks_match_dlib_on_its_detections(predictor: LandmarkPredictor) -> None:
    ref = np.load(REFERENCE)
    photos = {i: _rgb(name) for i, name in enumerate(ref["images"])}
    for k, box in enumerate(ref["box"]):
        found = predictor.predict(photos[int(ref["face_image"][k])], box)
        np.testing.assert_array_equal(found, ref["landmarks"][k], err_msg=f"face {k}, box {box}")


def test_landmarks_match_dlib_on_ties_borders_and_tiny_boxes(predictor: LandmarkPredictor) -> None:
    cases = np.load(HARD_CASES)
    boxes = cases["box"]
    spans = boxes[:, 2:] - boxes[:, :2]
    assert ((spans[:, 0] % 4) == 2).sum() >= 100  # the fixture holds what this test is about
    assert ((spans % 4) == 2).all(axis=1).sum() >= 40
    assert (boxes[:, :2] < 0).any(axis=1).sum() >= 20
    differing = []
    for i, name in enumerate(cases["images"]):
        rows = np.flatnonzero(cases["box_image"] == i)
        found = predictor.predict_many(_rgb(name), boxes[rows])
        same = (found == cases["box_landmarks"][rows]).all(axis=(1, 2))
        differing += [int(r) for r, ok in zip(rows, same, strict=True) if not ok]
    assert differing == [], f"{len(differing)} of {len(boxes)} boxes differ from dlib, e.g. {boxes[differing[:5]]}"


def test_predict_many_agrees_with_predict(predictor: LandmarkPredictor) -> None:
    image = _rgb("four_people.jpg")
    boxes = np.array([[60, 80, 260, 280], [350, 60, 530, 242], [-30, 400, 170, 602], [1, 1, 30, 30]])
    together = predictor.predict_many(image, boxes)
    assert together.shape == (4, 5, 2) and together.dtype == np.int64
    for box, points in zip(boxes, together, strict=True):
        np.testing.assert_array_equal(predictor.predict(image, tuple(box)), points)


def test_no_boxes_give_no_landmarks(predictor: LandmarkPredictor) -> None:
    assert predictor.predict_many(_rgb("obama.jpg"), []).shape == (0, 5, 2)


def test_rejects_images_that_are_not_rgb_uint8(predictor: LandmarkPredictor) -> None:
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((50, 50), dtype=np.uint8), (0, 0, 10, 10))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((50, 50, 3), dtype=np.float32), (0, 0, 10, 10))
