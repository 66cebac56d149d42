"""The torch port of dlib's face recognition ResNet, against dlib's own descriptors."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gallery.models import weights
from gallery.models.pretrained import load_recognition_network
from gallery.models.resnet import PARAMETER_COUNT, FaceResNet
from gallery.models.resnet_dlib import RECOGNITION_SHA256, WEIGHTS_NAME, convert_recognition_model
from gallery.vision.embedding import MODEL_ID, Embedder, embedding_model_id

DATA = Path(__file__).resolve().parent.parent / "data"
DLIB_REFERENCE = Path(__file__).resolve().parent / "fixtures" / "dlib_reference.npz"
# A faithful port differs from dlib by ~4e-7; folding or reordering arithmetic shows up above 1e-6.
DLIB_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def photo_chips() -> np.ndarray:
    """Five 150x150 crops of the sample portraits: real image statistics, no dlib needed."""
    chips = []
    for name in ("obama.jpg", "biden.jpg", "grace_hopper.jpg", "astronaut.jpg", "obama2.jpg"):
        with Image.open(DATA / name) as image:
            rgb = image.convert("RGB")
            side = min(rgb.size)
            chips.append(np.asarray(rgb.crop((0, 0, side, side)).resize((150, 150), Image.BILINEAR)))
    return np.stack(chips)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_descriptors_match_dlib_on_its_own_chips(embedder: Embedder) -> None:
    reference = np.load(DLIB_REFERENCE)
    chips, expected = reference["chips"], reference["descriptors"]
    assert len(chips) >= 3

    found = embedder.embed(chips)

    assert found.dtype == np.float32 and found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=0, atol=DLIB_TOLERANCE)


def test_a_batch_gives_the_descriptors_of_its_chips_one_by_one(photo_chips: np.ndarray) -> None:
    one_by_one = np.concatenate([Embedder(batch_size=1).embed(chip[None]) for chip in photo_chips])

    batched = Embedder(batch_size=32).embed(photo_chips)
    split_unevenly = Embedder(batch_size=2).embed(photo_chips)

    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)
    np.testing.assert_allclose(split_unevenly, one_by_one, rtol=0, atol=1e-6)


def test_no_chips_give_an_empty_descriptor_array(embedder: Embedder) -> None:
    found = embedder.embed(np.zeros((0, 150, 150, 3), dtype=np.uint8))

    assert found.shape == (0, 128) and found.dtype == np.float32


@pytest.mark.parametrize(
    "shape, dtype", [((150, 150, 3), np.uint8), ((1, 112, 112, 3), np.uint8), ((1, 150, 150, 3), np.float32)]
)
def test_chips_of_the_wrong_shape_or_type_are_refused(embedder: Embedder, shape: tuple, dtype: type) -> None:
    with pytest.raises(ValueError, match="150, 150, 3"):
        embedder.embed(np.zeros(shape, dtype=dtype))


def test_flip_averages_a_chip_with_its_mirror_image(photo_chips: np.ndarray) -> None:
    photo_chips = photo_chips[:2]
    mirrored = np.ascontiguousarray(photo_chips[:, :, ::-1])

    with_flip = Embedder(flip=True).embed(photo_chips)
    plain, plain_mirrored = Embedder().embed(photo_chips), Embedder().embed(mirrored)

    np.testing.assert_allclose(with_flip, (plain + plain_mirrored) / 2, rtol=0, atol=1e-6)
    # mirroring the input of a flip-averaged embedder changes nothing
    np.testing.assert_allclose(Embedder(flip=True).embed(mirrored), with_flip, rtol=0, atol=1e-6)


def test_read_only_chips_and_mirrored_views_are_accepted(embedder: Embedder, photo_chips: np.ndarray) -> None:
    read_only = photo_chips[:1].copy()
    read_only.setflags(write=False)  # as np.asarray(PIL image) gives

    mirrored_view = embedder.embed(read_only[:, :, ::-1])

    np.testing.assert_array_equal(mirrored_view, embedder.embed(np.ascontiguousarray(read_only[:, :, ::-1])))


def test_threads_sharing_an_embedder_get_the_same_descriptors(embedder: Embedder, photo_chips: np.ndarray) -> None:
    photo_chips = photo_chips[:3]
    expected = embedder.embed(photo_chips)
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        results[index] = embedder.embed(np.roll(photo_chips, index, axis=0))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for index, found in results.items():
        np.testing.assert_allclose(found, np.roll(expected, index, axis=0), rtol=0, atol=1e-6)


def test_the_model_id_names_dlibs_network() -> None:
    assert embedding_model_id() == MODEL_ID == "dlib_resnet_v1"


def test_parsing_consumes_the_whole_file_into_the_networks_parameters() -> None:
    # convert_recognition_model itself refuses a parse that stops short of the last byte.
    arrays = convert_recognition_model()

    assert sum(a.size for a in arrays.values()) == PARAMETER_COUNT == 5_614_592
    state = FaceResNet().state_dict()
    assert {name: a.shape for name, a in arrays.items()} == {name: tuple(t.shape) for name, t in state.items()}
    assert all(a.dtype == np.float32 for a in arrays.values())


def test_a_corrupted_weight_cache_is_detected_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_recognition_network().state_dict()  # leaves a verified file in the default cache
    good = weights.cache_dir() / f"{WEIGHTS_NAME}.safetensors"
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    cached = tmp_path / good.name
    corrupted = bytearray(good.read_bytes())
    corrupted[-64:] = bytes(64)  # zeroes the last weights: still a well-formed safetensors file
    cached.write_bytes(bytes(corrupted))

    network = load_recognition_network()

    assert hashlib.sha256(cached.read_bytes()).hexdigest() == RECOGNITION_SHA256
    rebuilt = network.state_dict()
    assert rebuilt.keys() == reference.keys()
    assert all(torch.equal(rebuilt[name], reference[name]) for name in reference)
