"""The decision rules a gallery decides by: the ones ``calibrate`` stored in it, else the shipped defaults.

Both live in the gallery's settings (``decision_rule`` for identify, ``verify_rule`` for the 1:1
threshold of verify and of the enrolment lookalike check), written together in one transaction
so a reader never sees one without the other. Every read goes to the store, so a calibration by
another process is in force for the next call.
"""

from __future__ import annotations

from gallery.decision import (
    DecisionRule,
    RuleRecord,
    VerifyRecord,
    default_rule,
    default_rule_record,
    default_verify_threshold,
    rule_from_dict,
)
from gallery.store import Store

RULE_SETTING = "decision_rule"
VERIFY_SETTING = "verify_rule"


class RulesInForce:
    """Reads and replaces the rules stored in one gallery."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def identify_rule(self) -> DecisionRule:
        stored = self._store.get_setting(RULE_SETTING)
        return rule_from_dict(stored["rule"]) if stored else default_rule()

    def verify_threshold(self) -> float:
        stored = self._store.get_setting(VERIFY_SETTING)
        return float(stored["threshold"]) if stored else default_verify_threshold()

    def records(self) -> tuple[RuleRecord, VerifyRecord]:
        """Both rules with their provenance (what ``info`` shows)."""
        shipped = default_rule_record()
        stored_rule = self._store.get_setting(RULE_SETTING)
        stored_verify = self._store.get_setting(VERIFY_SETTING)
        rule = RuleRecord.from_dict(stored_rule) if stored_rule else shipped.identify
        verify = VerifyRecord.from_dict(stored_verify) if stored_verify else shipped.verify
        return rule, verify

    def replace(self, identify: RuleRecord, verify: VerifyRecord) -> None:
        """Put both rules in force together (one transaction)."""
        self._store.set_settings({RULE_SETTING: identify.to_dict(), VERIFY_SETTING: verify.to_dict()})
