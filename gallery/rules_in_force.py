"""The decision rules a gallery decides by: the ones ``calibrate`` stored in it, else the shipped defaults.

Both live in the gallery's settings (``decision_rule`` for identify, ``verify_rule`` for the 1:1
threshold of verify and of the enrolment lookalike check), written together in one transaction
so a reader never sees one without the other. Every read goes to the store, so a calibration by
another process is in force for the next call.

Every read is checked (``gallery.decision.validation``). A setting that is present but cannot be
trusted (not JSON, null, incomplete, a kind this version does not know, a number NaN, infinite
or out of range) raises ``RuleInvalid``: the gallery refuses to decide rather than deciding with
it, and never falls back to the shipped rule on its own (the operator calibrated for a reason).
Only a setting that is absent means "the shipped rule".
"""

from __future__ import annotations

from typing import Any

from gallery.decision import (
    DecisionRule,
    RuleRecord,
    VerifyRecord,
    check_records,
    default_rule_record,
)
from gallery.errors import RuleInvalid
from gallery.store import Store

RULE_SETTING = "decision_rule"
VERIFY_SETTING = "verify_rule"

_ABSENT = object()


class RulesInForce:
    """Reads and replaces the rules stored in one gallery."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def identify_rule(self) -> DecisionRule:
        """The identify rule in force. Raises ``RuleInvalid`` when the stored one cannot be trusted."""
        return self.identify_record().rule

    def verify_threshold(self) -> float:
        """The 1:1 threshold in force. Raises ``RuleInvalid`` when the stored one cannot be trusted."""
        return self.verify_record().threshold

    def identify_record(self) -> RuleRecord:
        stored = self._read(RULE_SETTING)
        if stored is _ABSENT:
            return default_rule_record().identify
        return _checked(RULE_SETTING, RuleRecord.from_dict, stored)

    def verify_record(self) -> VerifyRecord:
        stored = self._read(VERIFY_SETTING)
        if stored is _ABSENT:
            return default_rule_record().verify
        return _checked(VERIFY_SETTING, VerifyRecord.from_dict, stored)

    def records(self) -> tuple[RuleRecord, VerifyRecord]:
        """Both rules with their provenance (what ``info`` shows). Raises ``RuleInvalid`` as the reads do."""
        return self.identify_record(), self.verify_record()

    def replace(self, identify: RuleRecord, verify: VerifyRecord) -> None:
        """Put both rules in force together (one transaction), after checking both read back as they are.

        Raises:
            RuleInvalid: one of them could not be trusted when read (nothing was stored).
        """
        check_records(identify, verify)
        self._store.set_settings({RULE_SETTING: identify.to_dict(), VERIFY_SETTING: verify.to_dict()})

    def _read(self, setting: str) -> Any:
        try:
            return self._store.get_setting(setting, _ABSENT)
        except ValueError as error:  # the stored text is not JSON (gallery.store.settings)
            raise _refusal(setting, str(error).removeprefix(f"setting {setting!r}: ")) from None


def _checked(setting: str, read: Any, stored: Any) -> Any:
    try:
        return read(stored)
    except RuleInvalid as error:
        raise _refusal(setting, error.problem or str(error)) from None


def _refusal(setting: str, problem: str) -> RuleInvalid:
    return RuleInvalid(
        f"the gallery's {setting} setting cannot be trusted ({problem}) and nothing is decided with it; "
        f"run `gallery calibrate` again, or delete the {setting!r} row of gallery.db's settings table "
        "to fall back to the shipped rule",
        setting=setting,
        problem=problem,
    )
