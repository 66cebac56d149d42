"""The MMOD CNN face detector port, against dlib's own detections on the sample photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery.models.mmod import DetectorSettings, output_to_input_mapping
from gallery.models.mmod_dlib import DETECTOR_NAME, DETECTOR_SHA256, convert_detector_model
from gallery.models.pretrained import load_detector_network
from gallery.models.weights import cache_dir
from gallery.vision.detector import (
    Detection,
    FaceDetector,
    build_tiled_pyramid,
    pyramid_level_sizes,
    pyramid_up_rgb,
    resize_float_image,
    tile_pyramid,
)

DATA = Path(__file__).resolve().parent.parent / "data"
# dlib.resize_image(src, 7, 10) on the 9x13 float32 src of _resize_source(): float32 bits, hex.
# (The same SSE code path builds every level of the detector's pyramid.)
DLIB_FLOAT_RESIZE_7X10 = (
    "0000a0c0340c03406c1806bfb76ddb3fc9f37c401bc3b03f6edb06417e18863f330cc3bf6edb363fb76d9b40eeba2e3f"
    "0dc390409fe7f93f63188640da3ccf3f6edb76401e8aa2be188661403dcf733f2449923e13862140d00b43bd0000e040"
    "1a0cc3bed8755d406edb36bf765d9740a2280a400000c040922489c010c33040f80b433eb76d1b405355954068180640"
    "254912413486e13ffa3c4fbf6edbb63f2549b2402dcbb23f7c9ea740922409c09065d93ff57d5fbf25499240be2ccb3e"
    "7a9e87405555d53f0100803fee3c4f40b2aa2a3fa0e73940c2aaaa3e5a96854000000000db3c0f40a5aaaabe6edbd640"
    "499264c0eb795e406e9e673f92244940c130ac4044cf3340254992c0f6791e40500cc3bd92240940"
)
# dlib.resize_image(rgb, 9, 12) (what pyramid_up does) on the 4x5 uint8 image of _pyramid_up_source().
DLIB_PYRAMID_UP_9X12 = (
    "00356a396e4673a82396cb1772a7514f848b5a6196943e73ce1a4fc23d729f77ac7cb1e60a3f744378507db22da0d521"
    "7db25b598e95656ba09e487dd82459cc4762a9817986bb9014497e4e835a87bc37aadf2b87bc6563989f6f75aaa85287"
    "e22f64d65152b38b4690c53a1e538858816592af41b4cc3591b46f6e9da9737fb4a15c91cf396ec95b4ab295279acf04"
    "285d9262686f9c744bbe7f3f9b8a797895b36c89be77669b8243788d6555999f31a4d90e32679c6c4f79a63856c8324a"
    "a56083828ebd6493c84d70a5354d82526f5f80a93baee3183c71a6764e83b02b60d21f54af598e8c92c7699ed3457aaf"
    "22578c4568697e8b46b8ad22467bb080588dba356add295eb96398969cd173a8dd4f84b92c61964f5873895850c2572c"
    "5186bb8a6297c43f74e73368c36da2a0a7dc7db2e75a8fc4366ba059487d93255acd0237"
)
DLIB_REFERENCE = Path(__file__).resolve().parent / "fixtures" / "dlib_reference.npz"
# A faithful port differs from dlib's scores by ~3e-6 (float summation order in the convolutions).
SCORE_TOLERANCE = 1e-4


def _resize_source() -> np.ndarray:
    return (((np.arange(9 * 13).reshape(9, 13) * 37) % 101) / 7 - 5).astype(np.float32)


def _pyramid_up_source() -> np.ndarray:
    return ((np.arange(4 * 5 * 3).reshape(4, 5, 3) * 53) % 256).astype(np.uint8)


def _rgb(name: str) -> np.ndarray:
    with Image.open(DATA / name) as image:
        return np.asarray(image.convert("RGB"))


def _expected(reference: np.lib.npyio.NpzFile, image_index: int, prefix: str = "") -> tuple[list, np.ndarray]:
    image_key = "up1_image" if prefix else "face_image"
    rows = reference[image_key] == image_index
    boxes = [tuple(int(v) for v in box) for box in reference[f"{prefix}box"][rows]]
    return boxes, reference[f"{prefix}score"][rows]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def reference() -> np.lib.npyio.NpzFile:
    return np.load(DLIB_REFERENCE)


def test_parsing_consumes_the_whole_file_and_reads_the_detector_settings() -> None:
    arrays = convert_detector_model()  # raises DlibFormatError if any byte is left unread

    settings = DetectorSettings.from_arrays(arrays)
    assert (settings.window_width, settings.window_height) == (80, 80)
    assert settings.nms_iou_threshold == pytest.approx(0.338, abs=1e-3)
    assert settings.nms_covered_threshold == 1.0
    assert settings.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert (settings.pyramid_padding, settings.pyramid_outer_padding) == (10, 11)
    assert arrays["conv0.weight"].shape == (16, 3, 5, 5) and arrays["conv6.weight"].shape == (1, 45, 9, 9)


def test_converted_weights_are_cached_under_their_recorded_checksum() -> None:
    load_detector_network()

    assert (cache_dir() / f"{DETECTOR_NAME}.safetensors").is_file()
    assert len(DETECTOR_SHA256) == 64


def test_output_cell_c_maps_to_input_pixel_8c_plus_14() -> None:
    assert output_to_input_mapping() == (8, 14)


def test_detections_match_dlib_on_the_sample_photos(detector: FaceDetector, reference) -> None:
    assert len(reference["images"]) >= 5 and len(reference["box"]) >= 10
    assert np.bincount(reference["face_image"]).max() >= 5  # multi-face photos are in the set
    for index, name in enumerate(reference["images"]):
        expected_boxes, expected_scores = _expected(reference, index)

        found = detector.detect(_rgb(str(name)))

        assert [d.box for d in found] == expected_boxes, name
        np.testing.assert_allclose([d.score for d in found], expected_scores, rtol=0, atol=SCORE_TOLERANCE)


def test_upsampled_detections_match_dlib_in_original_pixels(detector: FaceDetector, reference) -> None:
    names = list(reference["images"])
    upsampled = sorted({names[i] for i in reference["up1_image"]})
    assert "two_people.jpg" in upsampled
    for name in upsampled:
        expected_boxes, expected_scores = _expected(reference, names.index(name), prefix="up1_")

        found = detector.detect(_rgb(name), upsample=1)

        assert [d.box for d in found] == expected_boxes, name
        np.testing.assert_allclose([d.score for d in found], expected_scores, rtol=0, atol=SCORE_TOLERANCE)


# dlib 20.0.1's cnn_face_detection_model_v1 on crops (top, bottom, left, right) of
# data/group_of_six.jpg, whose small face only shows once the image is upsampled:
# upsample -> [(left, top, right, bottom, score)].
DLIB_SMALL_CROPS = {
    (0, 240, 0, 240): {
        0: [],
        1: [(78, 33, 125, 81, 1.0598909854888916)],
        2: [(79, 30, 128, 79, 1.0593668222427368)],
    },
    (0, 160, 0, 200): {
        0: [],
        1: [(78, 33, 125, 81, 1.058579921722412)],
    },
}


def test_upsampling_a_small_image_finds_dlibs_small_face(detector: FaceDetector) -> None:
    photo = _rgb("group_of_six.jpg")
    for (top, bottom, left, right), by_upsample in DLIB_SMALL_CROPS.items():
        crop = np.ascontiguousarray(photo[top:bottom, left:right])
        for upsample, expected in by_upsample.items():
            found = detector.detect(crop, upsample=upsample)

            assert [d.box for d in found] == [e[:4] for e in expected], (top, left, upsample)
            np.testing.assert_allclose([d.score for d in found], [e[4] for e in expected], atol=SCORE_TOLERANCE)


def test_detections_are_sorted_by_score_and_positive(detector: FaceDetector) -> None:
    found = detector.detect(_rgb("group_of_six.jpg"))

    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    assert all(isinstance(d, Detection) and d.box[0] < d.box[2] and d.box[1] < d.box[3] for d in found)


def test_a_blank_image_gives_no_detections(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((480, 640, 3), dtype=np.uint8)) == []
    assert detector.detect(np.full((200, 300, 3), 255, dtype=np.uint8)) == []


# dlib itself raises on most of these (its convolutions get no rows); an empty answer is kinder.
@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 7, 3), (30, 30, 3), (0, 0, 3), (100, 3, 3), (3, 100, 3)])
def test_tiny_images_give_no_detections(detector: FaceDetector, shape: tuple[int, int, int]) -> None:
    assert detector.detect(np.zeros(shape, dtype=np.uint8)) == []
    assert detector.detect(np.zeros(shape, dtype=np.uint8), upsample=1) == []


def test_rejects_images_that_are_not_rgb_uint8(detector: FaceDetector) -> None:
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50), dtype=np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 3), dtype=np.uint8), upsample=-1)


def test_pyramid_up_doubles_to_2h_plus_1_by_2w_plus_2() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)

    up = pyramid_up_rgb(image)

    assert up.shape == (75, 108, 3) and up.dtype == np.uint8
    # resize_image stretches corner to corner, so the top-left pixel is copied exactly.
    assert (up[0, 0] == image[0, 0]).all()


def test_pyramid_levels_are_resized_bit_for_bit_as_dlib_does() -> None:
    out = np.empty((7, 10, 1), dtype=np.float32)

    resize_float_image(_resize_source()[:, :, None], out)

    expected = np.frombuffer(bytes.fromhex(DLIB_FLOAT_RESIZE_7X10), dtype="<u4").reshape(7, 10)
    np.testing.assert_array_equal(out[:, :, 0].view("<u4"), expected)


def test_pyramid_up_is_bit_for_bit_dlibs() -> None:
    up = pyramid_up_rgb(_pyramid_up_source())

    expected = np.frombuffer(bytes.fromhex(DLIB_PYRAMID_UP_9X12), dtype=np.uint8).reshape(9, 12, 3)
    np.testing.assert_array_equal(up, expected)


def test_pyramid_levels_shrink_by_five_sixths_and_tiles_do_not_overlap() -> None:
    assert pyramid_level_sizes(480, 640)[:4] == [(480, 640), (400, 533), (333, 444), (277, 370)]
    rects, rows, cols = tile_pyramid(480, 640, padding=10, outer_padding=11)

    assert cols == 640 + 22 and rects[0] == (11, 11, 650, 490)
    for i, a in enumerate(rects):
        assert a[0] >= 0 and a[1] >= 0 and a[2] < cols and a[3] < rows
        for b in rects[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_the_tiled_pyramid_holds_the_centred_image_at_its_first_tile() -> None:
    _, settings = load_detector_network()
    image = np.random.default_rng(1).integers(0, 256, size=(60, 90, 3), dtype=np.uint8)

    tiled, rects = build_tiled_pyramid(image, settings)

    left, top, right, bottom = rects[0]
    first = tiled[top : bottom + 1, left : right + 1]
    mean = np.array(settings.input_mean, dtype=np.float32)
    np.testing.assert_array_equal(first, (image.astype(np.float32) - mean) / 256)
    assert tiled[:top].max() == 0 and tiled[:, :left].max() == 0


def test_concurrent_callers_get_the_same_detections(detector: FaceDetector) -> None:
    image = _rgb("two_people.jpg")
    expected = detector.detect(image)
    results: list[list[Detection]] = []

    def run() -> None:
        results.append(detector.detect(image))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [expected] * 3
