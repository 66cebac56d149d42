"""A damaged stored rule refuses to decide (issue 11, item 3): nothing fails open.

With ``decision_rule`` holding a threshold of NaN, identify used to match a stranger to an
enrolled person with confidence 1.00 (NaN compares false with every distance); a missing field,
an unknown kind or a malformed ``verify_rule`` gave raw tracebacks, and a settings value that is
not JSON raised ``JSONDecodeError``. Now every read of a rule is checked: identify, verify and
enroll raise ``RuleInvalid`` (exit code 4 on one line) and decide nothing, ``info`` reports the
rule as unreadable, and ``calibrate`` never stores a rule a reader would refuse.

The damaged rows are written with sqlite3 straight into the gallery's ``settings`` table, as a
damaged disk, a careless script or a hostile hand would. Faces come from ``FakePipeline``:
different photos are about 1.4 apart, so every probe here is a stranger to everyone enrolled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo

import gallery
import gallery.calibrating
import gallery.decision.records
from gallery import CalibrationError, Gallery, RuleInvalid
from gallery.calibration import Calibration, VerifyCalibration
from gallery.cli import EXIT_ERROR, CliContext, cli
from gallery.decision import DistanceThreshold, default_rule_record
from gallery.decision.defaults import _shipped_file
from gallery.store import Store

NAN, INF = math.nan, math.inf
SHIPPED = default_rule_record()
IDENTIFY_PROVENANCE = SHIPPED.identify.provenance.to_dict()
VERIFY_PROVENANCE = SHIPPED.verify.provenance.to_dict()


def learned(**changes: Any) -> dict[str, Any]:
    """The shipped learned rule's dict with some fields changed (a value of ... removes the field)."""
    rule = {**SHIPPED.identify.rule.to_dict(), **changes}
    return {key: value for key, value in rule.items() if value is not ...}


def changed(values: list[float], at: int, to: float) -> list[float]:
    return [to if i == at else v for i, v in enumerate(values)]


def identify_record(rule: Any, provenance: Any = IDENTIFY_PROVENANCE) -> str:
    return json.dumps({"rule": rule, "provenance": provenance})  # json writes NaN and Infinity as such


def verify_record(**fields: Any) -> str:
    return json.dumps({"threshold": 0.55, "provenance": VERIFY_PROVENANCE, **fields})


TABLE = SHIPPED.identify.rule.to_dict()
CURVE = TABLE["confidence"]

# name -> (the stored decision_rule text, a pattern the problem matches)
DAMAGED_DECISION_RULES: dict[str, tuple[str, str]] = {
    "nan threshold": (identify_record({"kind": "distance_threshold", "threshold": NAN}), r"threshold is nan"),
    "infinite threshold": (identify_record({"kind": "distance_threshold", "threshold": INF}), r"threshold is inf"),
    "negative threshold": (identify_record({"kind": "distance_threshold", "threshold": -0.6}), r"must be .*> 0"),
    "threshold as text": (identify_record({"kind": "distance_threshold", "threshold": "0.6"}), "not a number"),
    "nan in the learned table": (
        identify_record(learned(thresholds=changed(TABLE["thresholds"], 3, NAN))),
        r"thresholds\[3\] is nan",
    ),
    "strength above one": (
        identify_record(learned(strengths=changed(TABLE["strengths"], 0, 1.5))),
        r"strengths\[0\] is 1\.5, must be in \[0, 1\]",
    ),
    "negative strength": (identify_record(learned(strengths=changed(TABLE["strengths"], 0, -0.1))), r"strengths\[0\]"),
    "sizes descending": (identify_record(learned(sizes=TABLE["sizes"][::-1])), "not strictly ascending"),
    "size zero": (identify_record(learned(sizes=changed(TABLE["sizes"], 0, 0))), r"sizes\[0\] is 0"),
    "a threshold missing for a size": (
        identify_record(learned(thresholds=TABLE["thresholds"][:-1])),
        r"thresholds has \d+ values for \d+ sizes",
    ),
    "tie ratio zero": (identify_record(learned(tie_ratio=0.0)), r"tie_ratio is 0\.0, must be in \(0, 1\]"),
    "target FPIR of one": (identify_record(learned(target_fpir=1.0)), r"target_fpir is 1\.0"),
    "nan reference": (identify_record(learned(reference=NAN)), "reference is nan"),
    "infinite beyond threshold": (identify_record(learned(beyond_threshold=INF)), "beyond_threshold is inf"),
    "confidence above one": (
        identify_record(learned(confidence={**CURVE, "probabilities": changed(CURVE["probabilities"], 0, 1.5)})),
        r"confidence\.probabilities\[0\] is 1\.5",
    ),
    "confidence not monotone": (
        identify_record(learned(confidence={**CURVE, "probabilities": CURVE["probabilities"][::-1]})),
        "non-increasing",
    ),
    "negative within-person variance": (identify_record(learned(within_variance=-0.1)), r"within_variance is -0\.1"),
    "nan within-person variance": (identify_record(learned(within_variance=NAN)), r"within_variance is nan"),
    "margin bounds one short": (
        identify_record(learned(margin={"confidence": 0.95, "sample_divisor": 10, "fpir_bounds": [0.01]})),
        r"margin\.fpir_bounds has 1 values for \d+ sizes",
    ),
    "margin divisor below one": (
        identify_record(
            learned(margin={"confidence": 0.95, "sample_divisor": 0.5, "fpir_bounds": [0.01] * len(TABLE["sizes"])})
        ),
        r"margin\.sample_divisor is 0\.5",
    ),
    "margin divisors one short": (
        identify_record(
            learned(
                margin={
                    "confidence": 0.95,
                    "sample_divisor": 10,
                    "fpir_bounds": [0.01] * len(TABLE["sizes"]),
                    "sample_divisors": [10.0],
                }
            )
        ),
        r"margin\.sample_divisors has 1 values for \d+ sizes",
    ),
    "review table one short": (
        identify_record(learned(review={"fpir": 0.2, "thresholds": [1.0], "beyond_threshold": None})),
        r"review\.thresholds has 1 values for \d+ sizes",
    ),
    "nan in the review table": (
        identify_record(
            learned(review={"fpir": 0.2, "thresholds": [NAN] * len(TABLE["sizes"]), "beyond_threshold": None})
        ),
        r"review\.thresholds\[0\] is nan",
    ),
    "review rate not above the target": (
        identify_record(
            learned(review={"fpir": 0.005, "thresholds": [1.0] * len(TABLE["sizes"]), "beyond_threshold": None})
        ),
        r"review\.fpir 0\.005 is not above the target FPIR",
    ),
    "domain check one limit short": (
        identify_record(learned(domain={"quantile": 0.05, "sizes": [2, 3], "limits": [0.7]})),
        r"domain\.limits has 1 values for 2 sizes",
    ),
    "nan in the domain check": (
        identify_record(learned(domain={"quantile": 0.05, "sizes": [2, 3], "limits": [0.7, NAN]})),
        r"domain\.limits\[1\] is nan",
    ),
    "domain check from one person": (
        identify_record(learned(domain={"quantile": 0.05, "sizes": [1, 3], "limits": [0.7, 0.8]})),
        "do not ascend strictly from 2 or more",
    ),
    "domain quantile of one half": (
        identify_record(learned(domain={"quantile": 0.5, "sizes": [2], "limits": [0.7]})),
        r"domain\.quantile 0\.5 is not below 0\.5",
    ),
    "confidence bands not from one": (
        identify_record(learned(band_confidence={"from_sizes": [2, 5], "curves": [CURVE, CURVE]})),
        "do not ascend strictly from 1",
    ),
    "a band curve not monotone": (
        identify_record(
            learned(
                band_confidence={
                    "from_sizes": [1, 5],
                    "curves": [CURVE, {**CURVE, "probabilities": CURVE["probabilities"][::-1]}],
                }
            )
        ),
        r"band_confidence\.curves\[1\]\.probabilities are not non-increasing",
    ),
    "missing field": (identify_record(learned(tie_ratio=...)), "the field tie_ratio is missing"),
    "unknown kind": (identify_record({"kind": "always_match", "threshold": 0.6}), "unknown rule kind 'always_match'"),
    "no kind": (identify_record({"threshold": 0.6}), "unknown rule kind None"),
    "no rule": (json.dumps({"provenance": IDENTIFY_PROVENANCE}), "has no rule"),
    "provenance incomplete": (
        identify_record(TABLE, {k: v for k, v in IDENTIFY_PROVENANCE.items() if k != "target_fpir"}),
        "provenance lacks target_fpir",
    ),
    "not JSON": ("{'rule': nonsense", "not JSON"),
    "JSON null": ("null", "null"),
    "a list": ("[0.6]", "a list"),
}

# name -> (the stored verify_rule text, a pattern the problem matches)
DAMAGED_VERIFY_RULES: dict[str, tuple[str, str]] = {
    "a string": (json.dumps("0.55"), "the string '0.55'"),
    "nan threshold": (verify_record(threshold=NAN), "threshold is nan"),
    "infinite threshold": (verify_record(threshold=INF), "threshold is inf"),
    "negative threshold": (verify_record(threshold=-1), "threshold is -1"),
    "missing threshold": (json.dumps({"provenance": VERIFY_PROVENANCE}), "threshold is missing"),
    "no provenance": (json.dumps({"threshold": 0.55}), "provenance is null"),
    "not JSON": ("threshold=0.55", "not JSON"),
}


def store_raw(home: Path, setting: str, text: str | bytes) -> None:
    """Write ``text`` into the ``settings`` row ``setting`` as it is, bypassing every check."""
    connection = sqlite3.connect(home / "gallery.db")
    try:
        with connection:
            connection.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, '2026-11-29 00:00:00.000000') "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (setting, text),
            )
    finally:
        connection.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A gallery with two people enrolled."""
    with Gallery(tmp_path / "home", pipeline=FakePipeline()) as g:
        g.enroll("Barack Obama", fake_photo("obama"))
        g.enroll("Joe Biden", fake_photo("biden"))
    return tmp_path / "home"


def stranger() -> bytes:
    return fake_photo("grace hopper")


def audit_outcomes(g: Gallery, action: str) -> list[str]:
    return [event.outcome for event in g.audit_log(action=action)]


# ---- before the fix these decided, crashed or fell back silently --------------------------


def test_a_nan_threshold_used_to_match_a_stranger(home: Path) -> None:
    """The issue's report: a NaN threshold accepted everyone at full confidence. Now nothing is decided."""
    store_raw(home, "decision_rule", DAMAGED_DECISION_RULES["nan threshold"][0])
    with Gallery(home, pipeline=FakePipeline()) as g:
        with pytest.raises(RuleInvalid) as caught:
            g.identify(stranger())
        assert audit_outcomes(g, "identify") == ["refused"]
    assert caught.value.setting == "decision_rule"
    assert "decision_rule" in str(caught.value) and "gallery calibrate" in str(caught.value)


@pytest.mark.parametrize("case", list(DAMAGED_DECISION_RULES))
def test_identify_refuses_to_decide_with_a_damaged_decision_rule(home: Path, tmp_path: Path, case: str) -> None:
    text, problem = DAMAGED_DECISION_RULES[case]
    store_raw(home, "decision_rule", text)
    staff = tmp_path / "staff"
    staff.mkdir()
    (staff / "Alan Turing.png").write_bytes(fake_photo("alan"))
    with Gallery(home, pipeline=FakePipeline()) as g:
        with pytest.raises(RuleInvalid) as caught:
            g.identify(stranger())
        with pytest.raises(RuleInvalid):
            g.rule()
        with pytest.raises(RuleInvalid):  # the lookalike check asks identify's question
            g.enroll("Ada Lovelace", fake_photo("ada"))
        with pytest.raises(RuleInvalid):
            g.enroll_dir(staff)
        assert [p.name for p in g.people()] == ["Barack Obama", "Joe Biden"]
        assert audit_outcomes(g, "identify") == ["refused"]  # audited, and nothing was decided
        event = g.audit_log(action="identify")[0]
        assert event.rule is None and event.detail["setting"] == "decision_rule"
        # The 1:1 threshold is another setting, intact: verify still answers.
        assert g.verify("Barack Obama", fake_photo("obama")).verified
    assert caught.value.setting == "decision_rule"
    assert caught.value.problem is not None
    assert re.search(problem, caught.value.problem), caught.value.problem
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("case", list(DAMAGED_VERIFY_RULES))
def test_verify_and_add_refuse_with_a_damaged_verify_rule(home: Path, case: str) -> None:
    text, problem = DAMAGED_VERIFY_RULES[case]
    store_raw(home, "verify_rule", text)
    with Gallery(home, pipeline=FakePipeline()) as g:
        with pytest.raises(RuleInvalid) as caught:
            g.verify("Barack Obama", fake_photo("obama"))
        with pytest.raises(RuleInvalid):  # an added photo must pass the 1:1 threshold
            g.enroll("Barack Obama", fake_photo("obama-2"), add=True)
        with pytest.raises(RuleInvalid):  # and so must identify's match (within_verify): it cannot decide either
            g.identify(stranger())
        with pytest.raises(RuleInvalid):  # nor can the lookalike check, which asks identify's question
            g.enroll("Ada Lovelace", fake_photo("ada"))
        assert [p.name for p in g.people()] == ["Barack Obama", "Joe Biden"]
        assert audit_outcomes(g, "verify") == ["refused"]
        assert audit_outcomes(g, "identify") == ["refused"]
        assert audit_outcomes(g, "enroll") == ["enrolled", "enrolled"]  # the fixture's two; no refused enrolment
    assert caught.value.setting == "verify_rule"
    assert caught.value.problem is not None
    assert re.search(problem, caught.value.problem), caught.value.problem


@pytest.mark.parametrize(
    ("setting", "case"),
    [("decision_rule", case) for case in DAMAGED_DECISION_RULES] + [("verify_rule", c) for c in DAMAGED_VERIFY_RULES],
)
def test_info_reports_a_damaged_rule_instead_of_failing(home: Path, setting: str, case: str) -> None:
    damaged = DAMAGED_DECISION_RULES if setting == "decision_rule" else DAMAGED_VERIFY_RULES
    store_raw(home, setting, damaged[case][0])
    with Gallery(home, pipeline=FakePipeline()) as g:
        info = g.info()
    assert info.rule_error is not None and setting in info.rule_error
    shown = json.loads(json.dumps(info.to_dict(), default=str))
    assert shown["rule_error"] == info.rule_error
    if setting == "decision_rule":
        assert info.rule is None and shown["rule"] is None and shown["rule_fingerprint"] is None
        assert info.verify_rule == SHIPPED.verify
    else:
        assert info.verify_rule is None and shown["verify_rule"] is None
        assert info.rule == SHIPPED.identify


def test_info_of_a_sound_gallery_has_no_rule_error(home: Path) -> None:
    with Gallery(home, pipeline=FakePipeline()) as g:
        info = g.info()
    assert info.rule_error is None and info.to_dict()["rule_error"] is None


def test_an_absent_setting_means_the_shipped_rule_and_nothing_else_does(home: Path) -> None:
    with Gallery(home, pipeline=FakePipeline()) as g:
        assert g.rule() == SHIPPED.identify.rule and g.verify_threshold() == SHIPPED.verify.threshold
    store_raw(home, "decision_rule", "{}")  # an empty record used to fall back to the shipped rule, silently
    with Gallery(home, pipeline=FakePipeline()) as g, pytest.raises(RuleInvalid):
        g.rule()
    store_raw(home, "decision_rule", b"\xff\xfe{")  # bytes that are not even text
    with Gallery(home, pipeline=FakePipeline()) as g, pytest.raises(RuleInvalid, match="not JSON"):
        g.rule()


def test_a_sound_stored_rule_still_decides(home: Path) -> None:
    store_raw(home, "decision_rule", identify_record({"kind": "distance_threshold", "threshold": 0.6}))
    with Gallery(home, pipeline=FakePipeline()) as g:
        assert g.rule() == DistanceThreshold(0.6)
        assert [face.outcome for face in g.identify(fake_photo("obama"))] == ["match"]
        assert [face.outcome for face in g.identify(stranger())] == ["unknown"]


# ---- the command line ---------------------------------------------------------------------


def run(home: Path, *args: object) -> Any:
    return CliRunner().invoke(cli, ["--home", str(home), *map(str, args)], obj=CliContext(pipeline=FakePipeline()))


@pytest.mark.parametrize(
    ("setting", "case", "command"),
    [
        ("decision_rule", "nan threshold", "identify"),
        ("decision_rule", "not JSON", "identify"),
        ("decision_rule", "unknown kind", "identify"),
        ("decision_rule", "missing field", "identify"),
        ("verify_rule", "nan threshold", "verify"),
        ("verify_rule", "not JSON", "verify"),
        ("verify_rule", "a string", "add"),
        ("decision_rule", "nan threshold", "enroll"),
    ],
)
def test_the_command_refuses_on_one_line_with_exit_code_4(
    home: Path, tmp_path: Path, setting: str, case: str, command: str
) -> None:
    damaged = DAMAGED_DECISION_RULES if setting == "decision_rule" else DAMAGED_VERIFY_RULES
    store_raw(home, setting, damaged[case][0])
    photo = tmp_path / "probe.png"
    # enroll: a new person's own photo (Obama's file is enrolled already, refused before any rule is read);
    # add: a new file added to Obama (the same-person check reads the 1:1 threshold)
    faces = {
        "identify": stranger(),
        "verify": fake_photo("obama"),
        "enroll": fake_photo("ada"),
        "add": fake_photo("o2"),
    }
    photo.write_bytes(faces[command])
    args = {
        "identify": ["identify", photo],
        "verify": ["verify", "Barack Obama", photo],
        "enroll": ["enroll", "Ada Lovelace", photo],
        "add": ["enroll", "--add", "Barack Obama", photo],
    }[command]
    result = run(home, *args)
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert f"{setting} setting cannot be trusted" in lines[0] and "gallery calibrate" in lines[0]


def test_info_shows_the_damaged_rule_as_unreadable(home: Path) -> None:
    store_raw(home, "decision_rule", DAMAGED_DECISION_RULES["not JSON"][0])
    text = run(home, "info")
    assert text.exit_code == 0, text.output
    assert "identify rule: UNREADABLE" in text.stdout and "rule error: " in text.stdout
    shown = run(home, "info", "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["rule"] is None and "decision_rule" in info["rule_error"] and info["verify_rule"] is not None


# ---- calibrate never stores one, nor does the store ----------------------------------------


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    root = tmp_path / "labelled"
    for person in range(3):
        (root / f"person-{person}").mkdir(parents=True)
        for number in range(2):
            (root / f"person-{person}" / f"{number}.png").write_bytes(fake_photo(f"{person}/{number}"))
    return root


def _calibration(rule: Any) -> Calibration:
    return Calibration(rule, 0.01, 20, 0.01, 0.2, 0.4, 40, 400, 200, 200)


@pytest.mark.parametrize("bad", ["identify threshold nan", "verify threshold nan", "verify threshold zero"])
def test_a_calibration_that_would_store_a_bad_rule_stores_nothing(
    home: Path, labelled: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    shipped = SHIPPED.identify.rule
    rule = (
        dataclasses.replace(shipped, thresholds=(NAN, *shipped.thresholds[1:]))  # type: ignore[attr-defined]
        if bad.startswith("identify")
        else shipped
    )
    threshold = {"identify threshold nan": 0.55, "verify threshold nan": NAN, "verify threshold zero": 0.0}[bad]
    monkeypatch.setattr(gallery.calibrating, "calibrate", lambda *args, **kwargs: _calibration(rule))
    monkeypatch.setattr(
        gallery.calibrating,
        "calibrate_verify",
        lambda *args, **kwargs: VerifyCalibration(threshold, 0.001, 0.001, 0.05, 10, 1000),
    )
    with Gallery(home, pipeline=FakePipeline()) as g:
        with pytest.raises(CalibrationError, match="nothing was stored"):
            g.calibrate(labelled)
        assert g.rule() == SHIPPED.identify.rule and g.verify_threshold() == SHIPPED.verify.threshold
        assert audit_outcomes(g, "calibrate") == []
    with Store.open(home, model=FakePipeline().model_id) as store:
        assert store.get_setting("decision_rule") is None and store.get_setting("verify_rule") is None


def test_the_store_refuses_nan_in_a_setting(home: Path) -> None:
    with Store.open(home, model=FakePipeline().model_id) as store:
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            store.set_settings({"decision_rule": {"threshold": NAN}, "verify_rule": {"threshold": 0.5}})
        assert store.get_setting("decision_rule") is None and store.get_setting("verify_rule") is None


# ---- the shipped rules pass the same checks -----------------------------------------------


def test_the_shipped_rules_pass_the_checks_every_stored_rule_passes() -> None:
    from gallery.decision.defaults import shipped_rules

    data = _shipped_file()
    rules = shipped_rules(data)
    assert rules.identify.rule.kind == "normalised_distance" and rules.verify.threshold > 0
    assert gallery.decision.records.RuleRecord.from_dict(rules.identify.to_dict()) == rules.identify
    assert gallery.decision.records.VerifyRecord.from_dict(rules.verify.to_dict()) == rules.verify


@pytest.mark.parametrize("damage", ["nan threshold", "missing verify threshold", "missing provenance"])
def test_a_damaged_shipped_file_is_refused_too(damage: str) -> None:
    from gallery.decision.defaults import shipped_rules

    data = json.loads(json.dumps(_shipped_file()))
    if damage == "nan threshold":
        data["rule"]["thresholds"][0] = NAN
    elif damage == "missing verify threshold":
        del data["verify"]["threshold"]
    else:
        del data["provenance"]
    with pytest.raises(RuleInvalid, match=r"rules shipped with gallery .* are damaged") as caught:
        shipped_rules(data)
    assert caught.value.setting is None


def test_calibrating_again_replaces_a_damaged_rule(home: Path, labelled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The way back the message offers: `gallery calibrate` reads no stored rule, and its rule is in force after."""
    store_raw(home, "decision_rule", DAMAGED_DECISION_RULES["not JSON"][0])
    store_raw(home, "verify_rule", DAMAGED_VERIFY_RULES["nan threshold"][0])
    monkeypatch.setattr(gallery.calibrating, "calibrate", lambda *args, **kwargs: _calibration(SHIPPED.identify.rule))
    monkeypatch.setattr(
        gallery.calibrating,
        "calibrate_verify",
        lambda *args, **kwargs: VerifyCalibration(0.5, 0.001, 0.001, 0.05, 10, 1000),
    )
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.calibrate(labelled)
        assert g.info().rule_error is None and g.verify_threshold() == 0.5
        assert [face.outcome for face in g.identify(stranger())] == ["unknown"]
