"""A gallery never mixes embeddings of two models: it refuses, says how to re-embed, and re-embeds from the chips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gallery.cli import EXIT_ERROR, EXIT_OK, cli
from gallery.gallery import Gallery
from gallery.store import FaceRecord, ModelMismatch, Store
from gallery.vision.pipeline import default_pipeline

DATA = Path(__file__).resolve().parent.parent / "data"
OLD_MODEL = "dlib_resnet_v0_retired"


def _jpeg(chip: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(chip).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _enrol_with_the_old_model(home: Path, people: dict[str, str]) -> None:
    """A gallery as an older gallery with another embedding model left it: real chips, that model's vectors."""
    pipeline = default_pipeline()
    rng = np.random.default_rng(0)
    with Store.open(home, model=OLD_MODEL) as store:
        for name, photo in people.items():
            (face,) = pipeline.faces(DATA / photo)
            store.add_person_with_face(
                name,
                FaceRecord(
                    embedding=rng.normal(size=128).astype(np.float32),  # the old model's space: not comparable
                    model=OLD_MODEL,
                    box=face.box,
                    landmarks=tuple((float(x), float(y)) for x, y in face.landmarks),
                    quality=face.score,
                    photo_sha256="0" * 64,
                    chip_jpeg=_jpeg(face.chip),
                ),
            )


def test_a_gallery_of_another_models_faces_refuses_until_reembedded_from_its_chips(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    _enrol_with_the_old_model(home, {"Barack Obama": "obama.jpg", "Joe Biden": "biden.jpg"})
    with Gallery(home) as gallery:
        for attempt in (
            lambda: gallery.identify(DATA / "obama2.jpg"),
            lambda: gallery.verify("Barack Obama", DATA / "obama2.jpg"),
            lambda: gallery.enroll("Grace Hopper", DATA / "grace_hopper.jpg"),
        ):
            with pytest.raises(ModelMismatch, match=rf"2 by '{OLD_MODEL}'.*gallery reembed"):
                attempt()
        assert [p.name for p in gallery.people()] == ["Barack Obama", "Joe Biden"]  # reading and removing still work

        assert gallery.reembed().reembedded == 2
        (face,) = gallery.identify(DATA / "obama2.jpg")
        assert face.match is not None and face.match.name == "Barack Obama"
        assert gallery.verify("Joe Biden", DATA / "biden.jpg").verified
        assert gallery.reembed().reembedded == 0
    with Store.open(home, model=default_pipeline().model_id) as store:
        assert store.faces_to_reembed() == []
        assert store.stats().faces_by_model == {default_pipeline().model_id: 2}
        assert store.consistency_problems() == []
        (event,) = store.audit_log(action="reembed")
        assert event.detail == {"faces": 2, "from_models": [OLD_MODEL]}


def test_the_cli_says_to_reembed_and_reembeds(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    _enrol_with_the_old_model(home, {"Barack Obama": "obama.jpg"})
    runner = CliRunner()
    refused = runner.invoke(cli, ["--home", str(home), "identify", str(DATA / "obama2.jpg")])
    assert refused.exit_code == EXIT_ERROR
    assert "gallery reembed" in refused.stderr and "Traceback" not in refused.output
    done = runner.invoke(cli, ["--home", str(home), "reembed", "--json"])
    assert done.exit_code == EXIT_OK, done.output
    assert json.loads(done.stdout) == {"reembedded": 1, "model": default_pipeline().model_id}
    assert runner.invoke(cli, ["--home", str(home), "identify", str(DATA / "obama2.jpg")]).exit_code == EXIT_OK
