"""Rules as the gallery stores them: rebuilt from their dicts, fingerprinted, and kept with their provenance.

The gallery's ``settings`` table holds two JSON records, written by ``calibrate``:

- ``decision_rule``: ``{"rule": the identify rule's dict, "provenance": IdentifyProvenance}``;
- ``verify_rule``: ``{"threshold": the 1:1 distance, "provenance": VerifyProvenance}``.

The shipped defaults (``gallery/data/default_rule.json``) carry the same provenance. Reading
accepts every record earlier versions wrote: a provenance key this version does not know is
kept, verbatim, in ``extra`` (and written back out), so nothing stored is lost or refused.
A record that is damaged, incomplete or out of range is refused (``RuleInvalid``, see
``gallery.decision.validation``): a rule that cannot be trusted must not decide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gallery.decision.distance import DistanceThreshold
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.rule import DecisionRule
from gallery.decision.validation import check_provenance, check_rule_dict, check_verify_threshold, json_kind
from gallery.errors import RuleInvalid

CALIBRATED = "calibrated"
SHIPPED_DEFAULT = "shipped default"


def rule_from_dict(data: dict[str, Any]) -> DecisionRule:
    """Rebuild a stored rule, checked first (``gallery.decision.validation``).

    Raises:
        RuleInvalid: the dict is incomplete, holds a number out of range (NaN, infinite, a
            threshold <= 0, ...) or names no rule kind this version knows (a rule it cannot
            read must not decide). ``setting`` is None: the caller knows where it came from.
    """
    check_rule_dict(data)
    try:
        if data["kind"] == DistanceThreshold.kind:
            return DistanceThreshold.from_dict(data)
        return NormalisedDistance.from_dict(data)
    except (TypeError, ValueError, KeyError) as error:  # the checks above should leave none of these
        raise RuleInvalid(str(error)) from None


def check_rule(rule: DecisionRule) -> None:
    """Raise ``RuleInvalid`` unless the rule would be read back as it is (what ``calibrate`` checks before storing)."""
    check_rule_dict(rule.to_dict())


def check_records(identify: RuleRecord, verify: VerifyRecord) -> None:
    """Raise ``RuleInvalid`` unless both records would be read back as they are (checked before they are stored)."""
    RuleRecord.from_dict(identify.to_dict())
    VerifyRecord.from_dict(verify.to_dict())


def rule_fingerprint(rule: DecisionRule) -> str:
    """A short stable id of a rule's parameters: the audit log records it instead of the whole rule."""
    canonical = json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Both provenances list first where the photos came from, then what was learned on them (the
# order in which ``calibrate`` writes the keys). Fields left None are absent from the record.


@dataclass(frozen=True, kw_only=True)
class IdentifyProvenance:
    """Where an identify rule was learned, and how it did there (at the largest gallery simulated).

    Attributes:
        source: ``"calibrated"`` (``gallery calibrate``) or ``"shipped default"``.
        dataset: the labelled set, named (the shipped default).
        folder: the labelled folder, absolute (a calibration).
        photos: photos with a face that the rule was learned on.
        failures_to_acquire: labelled photos without a face.
        unreadable: files in the folder that could not be decoded.
        identities: people among the photos with a face.
        model: the embedding model the rule was learned for.
        date: when (ISO 8601).
        command: how to reproduce it (the shipped default).
        target_fpir: the false positive identification rate the rule was set for.
        gallery_size: people enrolled in the largest gallery simulated: beyond it the rule is
            stricter than its target.
        fpir, fnir: the rates it reached there.
        distance_threshold_fnir: the FNIR of the best single distance threshold there, for comparison.
        mated_searches, stranger_searches: the searches those rates were measured on.
        extra: keys of the stored record this version does not know, verbatim.
    """

    source: str
    dataset: str | None = None
    folder: str | None = None
    photos: int
    failures_to_acquire: int | None = None
    unreadable: int | None = None
    identities: int
    model: str | None = None
    date: str | None = None
    command: str | None = None
    target_fpir: float
    gallery_size: int
    fpir: float
    fnir: float
    distance_threshold_fnir: float
    mated_searches: int
    stranger_searches: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``info --json`` and ``calibrate --json`` print it)."""
        return _provenance_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentifyProvenance:
        return _provenance_from(cls, data)


@dataclass(frozen=True, kw_only=True)
class VerifyProvenance:
    """Where a verify threshold was learned, and its rates there (over all pairs of the photos).

    Attributes:
        source, dataset, folder, photos, failures_to_acquire, unreadable, identities, model,
            date, command: as in ``IdentifyProvenance`` (the shipped default names only its
            dataset and model).
        target_fmr: the false match rate the threshold was set for.
        fmr, fnmr: the rates it reached.
        genuine_pairs, impostor_pairs: the same-person and different-person pairs measured.
        extra: keys of the stored record this version does not know, verbatim.
    """

    source: str
    dataset: str | None = None
    folder: str | None = None
    photos: int | None = None
    failures_to_acquire: int | None = None
    unreadable: int | None = None
    identities: int | None = None
    model: str | None = None
    date: str | None = None
    command: str | None = None
    target_fmr: float
    fmr: float
    fnmr: float
    genuine_pairs: int
    impostor_pairs: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``info --json`` and ``calibrate --json`` print it)."""
        return _provenance_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerifyProvenance:
        return _provenance_from(cls, data)


@dataclass(frozen=True)
class RuleRecord:
    """The identify rule with its provenance: the ``decision_rule`` setting."""

    rule: DecisionRule
    provenance: IdentifyProvenance

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.to_dict(), "provenance": self.provenance.to_dict()}

    @staticmethod
    def from_dict(data: Any) -> RuleRecord:
        """The stored record, checked. Raises ``RuleInvalid`` (``setting`` None) when it cannot be trusted."""
        if not isinstance(data, Mapping):
            raise RuleInvalid(f"the record is {json_kind(data)}, not an object with a rule and its provenance")
        if "rule" not in data:
            raise RuleInvalid("the record has no rule")
        rule = rule_from_dict(data["rule"])
        check_provenance(data.get("provenance"), IdentifyProvenance)
        return RuleRecord(rule, IdentifyProvenance.from_dict(data["provenance"]))


@dataclass(frozen=True)
class VerifyRecord:
    """The 1:1 distance threshold with its provenance: the ``verify_rule`` setting."""

    threshold: float
    provenance: VerifyProvenance

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "provenance": self.provenance.to_dict()}

    @staticmethod
    def from_dict(data: Any) -> VerifyRecord:
        """The stored record, checked. Raises ``RuleInvalid`` (``setting`` None) when it cannot be trusted."""
        if not isinstance(data, Mapping):
            raise RuleInvalid(f"the record is {json_kind(data)}, not an object with a threshold and its provenance")
        if "threshold" not in data:
            raise RuleInvalid("the field threshold is missing")
        threshold = check_verify_threshold(data["threshold"])
        check_provenance(data.get("provenance"), VerifyProvenance)
        return VerifyRecord(threshold, VerifyProvenance.from_dict(data["provenance"]))


_Provenance = TypeVar("_Provenance", IdentifyProvenance, VerifyProvenance)


def _provenance_dict(provenance: IdentifyProvenance | VerifyProvenance) -> dict[str, Any]:
    known = {
        f.name: getattr(provenance, f.name)
        for f in dataclasses.fields(provenance)
        if f.name != "extra" and getattr(provenance, f.name) is not None
    }
    return {**known, **provenance.extra}


def _provenance_from(cls: type[_Provenance], data: Mapping[str, Any]) -> _Provenance:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return cls(
        **{key: value for key, value in data.items() if key in names},
        extra={key: value for key, value in data.items() if key not in names},
    )
