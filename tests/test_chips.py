"""Face chips: pixel-exact with dlib.get_face_chip(img, shape, size=150, padding=0.25), one face per call."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery.vision.chips import chip_details, chip_sampling, extract_chip, pyramid_down
from gallery.vision.dlib_linalg import affine_pinv, find_similarity_transform, svd

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = Path(__file__).resolve().parent.parent / "data"
# Written by scripts/dlib_reference.py and scripts/dlib_landmark_chip_cases.py with dlib 20.0.1.
REFERENCE = FIXTURES / "dlib_reference.npz"
HARD_CASES = FIXTURES / "dlib_landmark_chip_cases.npz"


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


def _hex(values: list[str]) -> list[float]:
    return [float.fromhex(v) for v in values]


# -- dlib's geometry, bit for bit (expected values printed by dlib 20.0.1 with %a) -------------


def test_pinv_reproduces_dlibs_last_bits() -> None:
    # pinv of the chip corners' design matrix (0,0), (149,0), (0,149): dlib's SVD leaves
    # tiny non-zeros where the exact inverse has zeros, and chips inherit them.
    found = [v for row in affine_pinv([(0, 0), (149, 0), (0, 149)]) for v in row]
    expected = ["-0x1.b7d6c3dda3389p-8", "-0x1.b7d6c3dda3389p-8", "0x1.ffffffffffffdp-1",
                "0x1.b7d6c3dda338ap-8", "0x0p+0", "0x1.8p-66",
                "0x1p-61", "0x1.b7d6c3dda338ap-8", "0x1p-65"]  # fmt: skip
    assert found == _hex(expected)


def test_svd_reconstructs_its_input() -> None:
    a = [[3.0, 1.5, -2.0], [0.5, -4.0, 1.0], [2.0, 2.0, 7.0], [1.0, 0.0, -1.0]]
    u, w, v = svd(a)
    rebuilt = np.array(u) @ np.diag(w) @ np.array(v).T
    np.testing.assert_allclose(rebuilt, a, atol=1e-12)
    assert min(w) >= 0


def test_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = 0.3, 2.5, (10.0, -4.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    source = [(0.0, 0.0), (1.0, 0.0), (0.0, 2.0), (3.0, 1.0)]
    target = [tuple(rotation @ p + shift) for p in source]
    m, t = find_similarity_transform(source, target)
    np.testing.assert_allclose(m, rotation, atol=1e-12)
    np.testing.assert_allclose(t, shift, atol=1e-12)


def test_chip_details_and_sampling_match_dlib_to_the_last_bit() -> None:
    # A large face: dlib builds two pyramid levels and samples the second.
    landmarks = np.array([[700, 300], [600, 305], [300, 300], [400, 305], [500, 600]])
    details = chip_details(landmarks)
    found = [details.left, details.top, details.right, details.bottom, details.angle]
    assert found == _hex(["0x1.97f1b5b509748p+5", "0x1.ae13da954969p+4", "0x1.e07ffaf4c992ep+9",
                          "0x1.d4717e6e2346ep+9", "0x1.ef47076c8dbb7p-13"])  # fmt: skip
    sampling = chip_sampling((900, 1000, 3), details)
    assert (sampling.crop, sampling.depth, sampling.level) == ((37, 13, 975, 899), 2, 1)
    assert [*sampling.m[0], *sampling.m[1], *sampling.b] == _hex(
        ["0x1.86e01a6e77425p+0", "-0x1.7a1be3c256c2p-12", "0x1.7a1be3c25738fp-12",
         "0x1.86e01a6e77424p+0", "0x1.a66e74bd569fep+0", "0x1.28b786d8976bep+1"]
    )  # fmt: skip


# -- pyramid_down<2> ---------------------------------------------------------------------------


def test_pyramid_down_keeps_flat_images_flat_and_sizes_like_dlib() -> None:
    image = np.full((41, 30, 3), (7, 128, 255), dtype=np.uint8)
    down = pyramid_down(image)
    assert down.shape == ((41 - 3) // 2, (30 - 3) // 2, 3)
    assert (down == (7, 128, 255)).all()
    assert pyramid_down(np.zeros((8, 100, 3), dtype=np.uint8)).shape == (0, 0, 3)


def test_pyramid_down_is_a_5_tap_binomial_filter() -> None:
    image = np.zeros((11, 11, 3), dtype=np.uint8)
    image[4, 4] = 255  # row and column 4 = 2*1 + 2: the centre of output pixel (1, 1)
    down = pyramid_down(image)
    assert down[1, 1, 0] == 255 * 36 // 256  # weight 6 * 6 of 256
    assert down[1, 0, 0] == 255 * 6 // 256  # pixel 4 is the last tap (weight 1) of output column 0


# -- parity with dlib ------------------------------------------------------------------------


def test_chips_match_dlib_on_its_detections() -> None:
    ref = np.load(REFERENCE)
    photos = {i: _rgb(name) for i, name in enumerate(ref["images"])}
    for k, landmarks in enumerate(ref["landmarks"]):
        chip = extract_chip(photos[int(ref["face_image"][k])], landmarks)
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        expected = ref["chips"][k]
        assert np.array_equal(chip, expected), f"face {k}: {(chip != expected).any(-1).sum()} pixels differ"


def test_chips_match_dlib_on_large_rotated_and_border_faces() -> None:
    cases = np.load(HARD_CASES)
    photos = {i: _rgb(name) for i, name in enumerate(cases["images"])}
    levels, with_black, differing = [], 0, []
    for k, landmarks in enumerate(cases["chip_landmarks"]):
        photo = photos[int(cases["chip_image"][k])]
        chip = extract_chip(photo, landmarks)
        levels.append(chip_sampling(photo.shape, chip_details(landmarks)).level)
        with_black += bool((chip == 0).all(axis=-1).any())
        if hashlib.sha256(chip.tobytes()).hexdigest() != cases["chip_sha256"][k]:
            differing.append(k)
    assert differing == [], f"{len(differing)} of {len(levels)} chips differ from dlib: cases {differing[:10]}"
    # The fixture covers direct sampling, one and two pyramid steps, and chips past the border.
    assert {-1, 0, 1} <= set(levels) and levels.count(1) + levels.count(2) >= 10
    assert with_black >= 20


def test_stored_chips_match_pixel_for_pixel() -> None:
    cases = np.load(HARD_CASES)
    for k, expected in zip(cases["full_chip_index"], cases["full_chips"], strict=True):
        chip = extract_chip(_rgb(str(cases["images"][cases["chip_image"][k]])), cases["chip_landmarks"][k])
        diff = np.abs(chip.astype(int) - expected)
        assert diff.max() == 0, f"case {k}: {(diff > 0).any(-1).sum()} pixels differ, by up to {diff.max()}"


def test_a_chip_depends_only_on_its_own_face() -> None:
    # dlib shares one pyramid among the faces of one call; we extract each face on its own,
    # so painting over the rest of the photo leaves a face's chip unchanged.
    ref = np.load(REFERENCE)
    k = int(np.flatnonzero(ref["images"][ref["face_image"]] == "four_people.jpg")[0])
    photo = _rgb("four_people.jpg").copy()
    landmarks = ref["landmarks"][k]
    left, top, right, bottom = chip_sampling(photo.shape, chip_details(landmarks)).crop
    outside = np.ones(photo.shape[:2], dtype=bool)
    outside[top : bottom + 1, left : right + 1] = False
    photo[outside] = 255
    assert np.array_equal(extract_chip(photo, landmarks), ref["chips"][k])


def test_a_face_outside_the_photo_gives_a_black_chip() -> None:
    landmarks = np.array([[900, 100], [880, 100], [840, 100], [860, 100], [870, 130]])
    assert not extract_chip(_rgb("obama.jpg"), landmarks).any()


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="uint8"):
        extract_chip(np.zeros((50, 50), dtype=np.uint8), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="landmarks"):
        extract_chip(np.zeros((50, 50, 3), dtype=np.uint8), np.zeros((68, 2)))
