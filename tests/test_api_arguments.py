"""Every bad argument of the public API is an ``InvalidArgument`` (a ``GalleryError`` and a ``ValueError``).

Before, ``identify(top_k=0)`` returned a match with no candidates, ``top_k=-1`` silently dropped
the last candidate, ``upsample=-1`` raised a bare ``ValueError`` and ``top_k='3'`` a
``TypeError`` from inside the search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakePipeline, fake_photo

import gallery
from gallery import Gallery, GalleryError, InvalidArgument


@pytest.fixture
def g(tmp_path: Path):
    with Gallery(tmp_path / "home", pipeline=FakePipeline()) as opened:
        opened.enroll("Ada Lovelace", fake_photo("ada"))
        opened.enroll("Alan Turing", fake_photo("alan"))
        yield opened


BAD_WHOLE_NUMBERS: list[Any] = [0, -1, "3", 2.0, True, None]


@pytest.mark.parametrize("top_k", [*BAD_WHOLE_NUMBERS, 101])
def test_identify_refuses_a_bad_top_k(g: Gallery, top_k: Any) -> None:
    with pytest.raises(InvalidArgument, match="top_k"):
        g.identify(fake_photo("ada"), top_k=top_k)


@pytest.mark.parametrize("upsample", [-1, 4, "1", 1.0, None])
def test_identify_refuses_a_bad_upsample(g: Gallery, upsample: Any) -> None:
    with pytest.raises(InvalidArgument, match="upsample"):
        g.identify(fake_photo("ada"), upsample=upsample)


def test_identify_top_k_one_and_the_largest_allowed_are_answered(g: Gallery) -> None:
    [one] = g.identify(fake_photo("ada"), top_k=1)
    assert one.outcome == "match" and len(one.candidates) == 1
    [every] = g.identify(fake_photo("ada"), top_k=100)
    assert [c.name for c in every.candidates] == ["Ada Lovelace", "Alan Turing"]


def test_verify_refuses_a_name_that_is_not_a_string(g: Gallery) -> None:
    with pytest.raises(InvalidArgument, match="name must be a string"):
        g.verify(1, fake_photo("ada"))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", BAD_WHOLE_NUMBERS)
def test_enroll_dir_and_reembed_refuse_a_bad_batch_size(g: Gallery, tmp_path: Path, size: Any) -> None:
    with pytest.raises(InvalidArgument, match="batch_photos"):
        g.enroll_dir(tmp_path, batch_photos=size)
    with pytest.raises(InvalidArgument, match="batch_size"):
        g.reembed(batch_size=size)


@pytest.mark.parametrize("target", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "0.01", True, None])
def test_calibrate_refuses_a_target_that_is_not_a_rate(g: Gallery, tmp_path: Path, target: Any) -> None:
    with pytest.raises(InvalidArgument, match="target_fpir"):
        g.calibrate(tmp_path, target_fpir=target)
    with pytest.raises(InvalidArgument, match="target_fmr"):
        g.calibrate(tmp_path, target_fmr=target)


@pytest.mark.parametrize("upsample", [-1, 4, "0"])
def test_gallery_faces_refuses_a_bad_upsample_before_loading_a_model(upsample: Any) -> None:
    with pytest.raises(InvalidArgument, match="upsample") as refused:
        gallery.faces(fake_photo("ada"), upsample=upsample)
    assert isinstance(refused.value, GalleryError) and isinstance(refused.value, ValueError)
