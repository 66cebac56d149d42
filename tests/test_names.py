"""Names that reach the gallery: what a new person may be called, and how a name is looked up.

A name is shown to a guard and typed by an administrator, so two names that look the same on a
screen must be one name: a new name may not hide characters (zero-width, direction overrides,
other format characters), controls, separators, non-characters or compatibility forms, and one
that is not text at all (bytes that were not UTF-8) is a typed error, never a crash. Names
stored before these rules are still found, added to and removed. Over ``FakePipeline``: names
are the subject here, not faces.
"""

from __future__ import annotations

import os
import re
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo

from gallery import Gallery, InvalidFaceRecord, InvalidName, PersonNotFound
from gallery.cli import EXIT_ERROR, CliContext, cli
from gallery.enrolment import face_record
from gallery.store.validation import clean_name, new_name
from gallery.vision.image import photo_sha256

LEGITIMATE = [
    "José Álvarez",
    "Jose\u0301 A\u0301lvarez",  # the same name, decomposed: stored composed
    "王小明",
    "محمد علي",  # Arabic letters (a right-to-left script is fine; only invisible overrides are not)
    "דוד כהן",
    "O'Brien",
    "Se\u00e1n O\u2019Casey",  # a typographic apostrophe (U+2019)
    "Jean-Luc Picard",
    "Nguyễn Thị Minh Khai",
    "Łukasz Żółć",
    "Ólafur Arnalds",
    "김민준",
    "Ελένη Παπαδοπούλου",
    "Ирина Шейк",
    "\u02bbIolani",  # the Hawaiian okina (U+02BB), a letter
]

HIDDEN = {
    "zero-width space": ("Ada\u200bLovelace", "U+200B ZERO WIDTH SPACE"),
    "zero-width non-joiner": ("Ada\u200cLovelace", "U+200C ZERO WIDTH NON-JOINER"),
    "zero-width joiner": ("Ada\u200dLovelace", "U+200D ZERO WIDTH JOINER"),
    "right-to-left override": ("Ada \u202eecalevoL", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    "left-to-right isolate": ("Ada \u2066Lovelace\u2069", "U+2066 LEFT-TO-RIGHT ISOLATE"),
    "right-to-left mark": ("Ada\u200f Lovelace", "U+200F RIGHT-TO-LEFT MARK"),
    "byte order mark": ("\ufeffAda Lovelace", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    "soft hyphen": ("Ada Love\u00adlace", "U+00AD SOFT HYPHEN"),
    "word joiner": ("Ada\u2060 Lovelace", "U+2060 WORD JOINER"),
    "tag character": ("Ada Lovelace\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A"),
    "variation selector": ("Ada\ufe0f Lovelace", "U+FE0F VARIATION SELECTOR-16"),
    "Hangul filler": ("Ada\u3164Lovelace", "U+3164 HANGUL FILLER"),
    "combining grapheme joiner": ("Ada\u034f Lovelace", "U+034F COMBINING GRAPHEME JOINER"),
    "line separator": ("Ada\u2028Lovelace", "U+2028 LINE SEPARATOR"),
    "bell": ("Ada\x07Lovelace", "U+0007, a control character"),
    "escape sequence": ("Ada\x1b[2JLovelace", "U+001B, a control character"),
    "next line (C1 control)": ("Ada\x85Lovelace", "U+0085, a control character"),
    "non-character U+FFFE": ("Ada\ufffeLovelace", "U+FFFE, a Unicode non-character"),
    "non-character U+FDD0": ("Ada\ufdd0Lovelace", "U+FDD0, a Unicode non-character"),
    "non-character U+1FFFF": ("Ada\U0001ffffLovelace", "U+1FFFF, a Unicode non-character"),
    "unpaired surrogate": ("Ada\ud800Lovelace", "U+D800, an unpaired surrogate"),
    "not UTF-8 (a Latin-1 byte)": (os.fsdecode(b"Caf\xe9"), "byte 0xE9 that is not UTF-8"),
}

COMPATIBILITY = {
    "fullwidth letters": ("\uff21\uff44\uff41 Lovelace", "U+FF21 FULLWIDTH LATIN CAPITAL LETTER A", "'Ada Lovelace'"),
    "a ligature": ("\ufb01ona Apple", "U+FB01 LATIN SMALL LIGATURE FI", "'fiona Apple'"),
    "a no-break space": ("Ada\u00a0Lovelace", "U+00A0 NO-BREAK SPACE", "'Ada Lovelace'"),
    "an ideographic space": ("王\u3000小明", "U+3000 IDEOGRAPHIC SPACE", "'王 小明'"),
    "mathematical bold letters": ("\U0001d400da", "U+1D400 MATHEMATICAL BOLD CAPITAL A", "'Ada'"),
    "an Arabic presentation form": ("\ufedf\ufef4\ufee0\ufef0", "U+FEDF ARABIC LETTER LAM INITIAL FORM", None),
}


@pytest.fixture
def g(tmp_path: Path):
    with Gallery(tmp_path / "home", pipeline=FakePipeline()) as opened:
        yield opened


def _photo(tmp_path: Path, seed: str) -> Path:
    path = tmp_path / f"{seed}.png"
    path.write_bytes(fake_photo(seed))
    return path


@pytest.mark.parametrize("name", LEGITIMATE)
def test_names_in_every_script_with_accents_apostrophes_and_hyphens_are_enrolled_and_found(
    g: Gallery, tmp_path: Path, name: str
):
    enrolled = g.enroll(name, _photo(tmp_path, name))
    assert enrolled.name == unicodedata.normalize("NFC", name)
    assert g.verify(name, _photo(tmp_path, name)).verified
    assert [p.name for p in g.people()] == [enrolled.name]


@pytest.mark.parametrize("kind", list(HIDDEN))
def test_a_new_name_hiding_a_character_is_refused_naming_its_code_point(g: Gallery, tmp_path: Path, kind: str):
    name, says = HIDDEN[kind]
    with pytest.raises(InvalidName, match=re.escape(says)) as refused:
        g.enroll(name, _photo(tmp_path, kind))
    assert isinstance(refused.value, InvalidFaceRecord)  # what a bad name raised before, still caught as it was
    message = str(refused.value)
    assert message.isprintable(), "the message must print as it is: the name in it is escaped"
    message.encode("utf-8")  # no surrogate survives into a message
    assert g.people() == []
    with pytest.raises(InvalidName, match=re.escape(says)):
        g.enroll("Ada Lovelace", _photo(tmp_path, kind), external_id=name)


@pytest.mark.parametrize("kind", list(COMPATIBILITY))
def test_a_new_name_in_compatibility_forms_is_refused_and_the_plain_form_suggested(
    g: Gallery, tmp_path: Path, kind: str
):
    name, says, suggested = COMPATIBILITY[kind]
    with pytest.raises(InvalidName, match=re.escape(says)) as refused:
        g.enroll(name, _photo(tmp_path, kind))
    if suggested:
        assert str(refused.value).endswith(f"write {suggested}")
    plain = unicodedata.normalize("NFKC", name)
    assert g.enroll(plain, _photo(tmp_path, kind)).name == plain  # what the error suggests is accepted


def test_looking_up_a_name_that_is_not_text_is_a_typed_error_not_a_crash(g: Gallery, tmp_path: Path):
    g.enroll("Café", _photo(tmp_path, "cafe"))
    latin1 = os.fsdecode("Café".encode("latin-1"))  # how Python hands over a Latin-1 argument
    for call in (
        lambda: g.enroll(latin1, _photo(tmp_path, "other"), add=True),
        lambda: g.verify(latin1, _photo(tmp_path, "cafe")),
        lambda: g.remove(latin1),
    ):
        with pytest.raises(InvalidName, match="byte 0xE9 that is not UTF-8"):
            call()
    assert [p.name for p in g.people()] == ["Café"]


def test_a_name_stored_before_these_rules_is_still_found_added_to_and_removed(g: Gallery, tmp_path: Path):
    legacy = "Ada\u200b Lovelace"  # enrolled by an earlier version, which took zero-width spaces
    photo = _photo(tmp_path, "ada")
    face = FakePipeline().faces(photo)[0]
    g._store.add_person_with_face(legacy, face_record(face, g._pipeline.model_id, photo_sha256(photo)))
    assert g.verify(legacy, photo).verified
    assert not g.enroll(legacy, _photo(tmp_path, "ada-2"), add=True, allow_different=True).new_person
    with pytest.raises(InvalidName, match=r"U\+200B"):  # but nobody new may be given such a name
        g.enroll("Grace\u200b Hopper", _photo(tmp_path, "grace"))
    assert g.remove(legacy).faces_removed == 2
    with pytest.raises(PersonNotFound):
        g.verify(legacy, photo)


def test_the_rules_fold_canonical_spellings_but_keep_what_was_written(g: Gallery, tmp_path: Path):
    # NFC: "é" typed as one code point or as e + combining accent is one person.
    g.enroll("Zoé", _photo(tmp_path, "zoe"))
    assert g.verify("Zoe\u0301", _photo(tmp_path, "zoe")).verified
    assert clean_name("  Zoe\u0301 ") == "Zoé" == new_name("Zoe\u0301")
    # Not NFKC: a name that NFKC would rewrite is refused (above), never silently changed.
    assert clean_name("\uff21da") == "\uff21da"


def test_the_command_refuses_a_name_that_is_not_utf8_with_exit_4_on_one_line(tmp_path: Path):
    photo = _photo(tmp_path, "cafe")
    name = os.fsdecode(b"Caf\xe9")  # `gallery enroll $'Caf\xe9' photo` from a Latin-1 terminal
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "home"), "enroll", name, str(photo)], obj=CliContext(pipeline=FakePipeline())
    )
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "Error: name 'Caf\\xe9' holds byte 0xE9 that is not UTF-8 (U+DCE9, an unpaired surrogate): "
        "a name must be UTF-8 text\n"
    )
    with sqlite3.connect(tmp_path / "home" / "gallery.db") as db:
        assert db.execute("SELECT count(*) FROM people").fetchone() == (0,)
