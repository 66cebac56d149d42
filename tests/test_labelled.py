"""Labelled folders for calibration: who is in each photo, what has no face, what cannot be read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fakes import FakePipeline, fake_embedding_of, fake_photo
from PIL import Image

from gallery import ImageNotFound
from gallery.labelled import embed_labelled, labelled_photos


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((96, 96, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "labelled"
    for person, photos in {"Ada": ["a1", "a2"], "Alan": ["t1"]}.items():
        (root / person).mkdir(parents=True)
        for name in photos:
            (root / person / f"{name}.png").write_bytes(fake_photo(name))
    (root / "Grace.png").write_bytes(fake_photo("g1"))  # one photo per person, named after the file
    (root / "Alan" / "blank.png").write_bytes(blank_png())  # no face
    (root / "Ada" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # unreadable
    (root / "_unlabelled").mkdir()
    (root / "_unlabelled" / "crowd.png").write_bytes(fake_photo("crowd"))
    return root


def test_every_photo_is_embedded_failed_or_unreadable_and_unlabelled_folders_are_skipped(folder: Path) -> None:
    faces = embed_labelled(folder, FakePipeline())
    assert faces.paths.tolist() == ["Ada/a1.png", "Ada/a2.png", "Alan/t1.png", "Grace.png"]
    assert faces.labels.tolist() == ["Ada", "Ada", "Alan", "Grace"]
    np.testing.assert_array_equal(faces.embeddings[0], fake_embedding_of("a1"))
    assert faces.failure_paths.tolist() == ["Alan/blank.png"] and faces.failure_labels.tolist() == ["Alan"]
    assert [path for path, _ in faces.unreadable] == ["Ada/broken.jpg"]
    assert faces.identities == 3 and faces.model == FakePipeline().model_id
    assert set(faces.embedding_of()) == set(faces.paths.tolist())


def test_progress_counts_every_photo_once(folder: Path) -> None:
    seen: list[tuple[int, int]] = []
    embed_labelled(folder, FakePipeline(), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and all(total == 6 for _, total in seen)  # _unlabelled is not counted


def test_a_missing_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        labelled_photos(tmp_path / "nowhere")
