"""The liveness hook: gallery has no anti-spoofing of its own, but a check can veto faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import FakePipeline, fake_photo

from gallery import NotLive
from gallery.gallery import Gallery
from gallery.store import Store
from gallery.vision.pipeline import Face


class ScriptedLivenessCheck:
    """A stand-in anti-spoofing check: gives the verdict it is told to; records what it was shown."""

    def __init__(self) -> None:
        self.verdict = True
        self.seen: list[tuple[tuple[int, ...], tuple[int, int, int, int]]] = []

    def __call__(self, photo: np.ndarray, face: Face) -> bool:
        self.seen.append((photo.shape, face.box))
        return self.verdict


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "gallery"
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        gallery.enroll("Ada", fake_photo("Ada"))
    return home


def test_without_a_liveness_check_a_photo_of_a_photo_is_recognised(home: Path) -> None:
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        (face,) = gallery.identify(fake_photo("Ada"))  # nothing tells a print from a person
        assert face.match is not None and face.match.name == "Ada"


def test_a_face_the_liveness_check_vetoes_is_not_searched_nor_matched(home: Path) -> None:
    check = ScriptedLivenessCheck()
    with Gallery(home, pipeline=FakePipeline(), liveness=check) as gallery:
        check.verdict = False  # e.g. a printed photo held up to the camera
        (face,) = gallery.identify(fake_photo("Ada"))
        assert (face.outcome, face.match, face.candidates) == ("not_live", None, ())
        with pytest.raises(NotLive):
            gallery.verify("Ada", fake_photo("Ada"))
        check.verdict = True  # Ada herself
        (face,) = gallery.identify(fake_photo("Ada"))
        assert face.outcome == "match" and face.match.name == "Ada"
        assert gallery.verify("Ada", fake_photo("Ada")).verified
    assert check.seen == [((96, 96, 3), (0, 0, 95, 95))] * 4  # the whole photo and the face, every time
    with Store.open(home, model=FakePipeline().model_id) as store:
        outcomes = [(e.action, e.outcome) for e in store.audit_log(limit=4)]
    assert outcomes == [("verify", "verified"), ("identify", "match"), ("verify", "not_live"), ("identify", "not_live")]


def test_a_liveness_check_that_fails_fails_the_call(home: Path) -> None:
    def broken(photo: np.ndarray, face: Face) -> bool:
        raise RuntimeError("camera depth sensor unplugged")

    with Gallery(home, pipeline=FakePipeline(), liveness=broken) as gallery, pytest.raises(RuntimeError):
        gallery.identify(fake_photo("Ada"))
