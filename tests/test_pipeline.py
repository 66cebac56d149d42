"""gallery.faces() end to end against the original dlib, and its input and size policies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gallery
from gallery.vision.embedding import Embedder
from gallery.vision.image import load_rgb
from gallery.vision.pipeline import DETECTION_MAX_SIDE, FacePipeline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
REFERENCE = ROOT / "tests" / "fixtures" / "dlib_reference.npz"


def _clipped(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    height, width = shape[:2]
    return tuple(int(np.clip(v, 0, (width if i % 2 == 0 else height) - 1)) for i, v in enumerate(box))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as ref:
        return {key: ref[key] for key in ref.files}


def test_faces_match_dlib_end_to_end_on_every_sample_photo(reference):
    """Boxes equal, scores within 1e-4, landmarks identical, chips exact, descriptors within 1e-5."""
    assert len(reference["face_image"]) >= 20
    pipeline = FacePipeline(flip=False)  # dlib's own descriptors, without test-time augmentation
    for index, name in enumerate(reference["images"]):
        rows = np.flatnonzero(reference["face_image"] == index)
        shape = load_rgb(DATA / str(name)).shape
        # dlib's boxes may reach past the photo's edge; ours are clipped to it (the landmarks, chips and
        # descriptors below, which come from the whole box, must still be dlib's exactly).
        boxes = {r: _clipped(reference["box"][r], shape) for r in rows}
        found = {f.box: f for f in pipeline.faces(DATA / str(name))}
        assert sorted(found) == sorted(boxes.values()), name
        for r in rows:
            face = found[boxes[r]]
            assert abs(face.score - reference["score"][r]) < 1e-4
            np.testing.assert_array_equal(face.landmarks, reference["landmarks"][r])
            np.testing.assert_array_equal(face.chip, reference["chips"][r])
            np.testing.assert_allclose(face.embedding, reference["descriptors"][r], rtol=0, atol=1e-5)
            assert face.embedding.dtype == np.float32 and face.embedding.shape == (128,)


def test_faces_come_largest_first():
    found = gallery.faces(DATA / "group_of_six.jpg")
    assert len(found) >= 4
    areas = [f.width * f.height for f in found]
    assert areas == sorted(areas, reverse=True)


def test_every_image_input_kind_gives_the_same_faces():
    path = DATA / "obama2.jpg"
    pil = Image.open(path)
    expected = gallery.faces(path)
    for image in (str(path), path.read_bytes(), pil, np.asarray(pil.convert("RGB"))):
        got = gallery.faces(image)
        assert [f.box for f in got] == [f.box for f in expected]
        np.testing.assert_array_equal(got[0].embedding, expected[0].embedding)


def test_a_photo_without_a_face_gives_an_empty_list():
    assert gallery.faces(np.full((480, 640, 3), 200, np.uint8)) == []


def test_a_rotated_phone_photo_is_detected_upright():
    upright = gallery.faces(DATA / "obama.jpg")
    stored = Image.open(DATA / "obama.jpg").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif)
    (face,) = gallery.faces(buf.getvalue())
    assert np.linalg.norm(face.embedding - upright[0].embedding) < 0.1


def test_a_huge_photo_is_detected_downscaled_and_boxes_come_in_its_own_pixels():
    original = Image.open(DATA / "obama.jpg")  # 480x600, face box (187, 73, 323, 209)
    factor = 5  # 2400x3000: detection runs at DETECTION_MAX_SIDE on the longest side
    huge = original.resize((original.width * factor, original.height * factor), Image.BICUBIC)
    assert max(huge.size) > DETECTION_MAX_SIDE
    (face,) = gallery.faces(huge)
    (small,) = gallery.faces(original)
    np.testing.assert_allclose(
        np.array(face.box), np.array(small.box) * factor, atol=0.1 * factor * small.width
    )  # pyramid steps move boxes a little
    assert np.linalg.norm(face.embedding - small.embedding) < 0.2


def test_upsampling_finds_faces_too_small_for_the_plain_detector():
    small = Image.open(DATA / "obama.jpg").resize((160, 200))  # a face of about 45 px
    assert gallery.faces(small) == []
    (face,) = gallery.faces(small, upsample=1)
    assert face.width < 80


def test_default_descriptors_average_the_chip_and_its_mirror_and_say_so():
    (face,) = gallery.faces(DATA / "obama.jpg")
    plain, mirrored = Embedder().embed(np.stack([face.chip, face.chip[:, ::-1]]))
    np.testing.assert_allclose(face.embedding, (plain + mirrored) / 2, rtol=0, atol=1e-5)
    assert FacePipeline().model_id == "dlib_resnet_v1+flip"
    assert FacePipeline(flip=False).model_id == "dlib_resnet_v1"


@pytest.mark.parametrize(
    ("crop", "edge"),
    [((slice(None), slice(220, None)), "left"), ((slice(100, None), slice(None)), "top")],
)
def test_a_face_cut_by_the_photos_edge_has_its_box_clipped_to_the_photo_and_is_still_recognised(crop, edge):
    """data/obama.jpg cropped through the face: dlib's box would start at -21 (left) or -27 (top)."""
    whole = np.asarray(Image.open(DATA / "obama.jpg").convert("RGB"))
    cut = np.ascontiguousarray(whole[crop])
    [reference] = gallery.faces(whole)
    [face] = gallery.faces(cut)
    left, top, right, bottom = face.box
    height, width = cut.shape[:2]
    assert 0 <= left <= right < width and 0 <= top <= bottom < height
    assert (left if edge == "left" else top) == 0  # the visible part starts at the edge
    assert cut[top : bottom + 1, left : right + 1].size > 0  # drawable and croppable as reported
    assert np.linalg.norm(face.embedding - reference.embedding) < 0.35  # the chip still came from the whole face
