"""What identify runs: the evidence a rule reads, the rules, their confidence, and the shipped defaults.

Pure numpy; imports neither the store nor ``gallery.calibration`` (which learns these rules
offline and imports this package). Modules, bottom up:

- ``rule``: ``Evidence``, ``Decision``, ``Outcome``, the ``DecisionRule`` protocol, and ``within_verify``
  (no match that verify would reject);
- ``distance``: ``DistanceThreshold``, the plain distance rule (dlib's 0.6);
- ``confidence``: ``ConfidenceCurve``, margin -> probability the match is right;
- ``normalised``: ``NormalisedDistance``, the learned rule (d1 / sqrt(d2 * cohort)^s <= T, by gallery size);
- ``cohort``: ``COHORT_SIZE`` and ``cohort_from_searches``, the cohort distance identify computes;
- ``validation``: the checks every stored rule passes before it decides (complete, known kind, in range);
- ``records``: rules as stored (``rule_from_dict``, ``rule_fingerprint``) with their provenance;
- ``defaults``: the shipped rules (``gallery/data/default_rule.json``).

Modules inside the package import each other by their own names, never through this one.
"""

from gallery.decision.cohort import COHORT_SIZE, cohort_distance, cohort_from_searches
from gallery.decision.confidence import ConfidenceCurve
from gallery.decision.defaults import ShippedRules, default_rule, default_rule_record, default_verify_threshold
from gallery.decision.distance import DLIB_DISTANCE_THRESHOLD, DistanceThreshold
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.records import (
    IdentifyProvenance,
    RuleRecord,
    VerifyProvenance,
    VerifyRecord,
    check_records,
    check_rule,
    rule_fingerprint,
    rule_from_dict,
)
from gallery.decision.rule import Decision, DecisionRule, Evidence, Outcome, within_verify

__all__ = [
    "COHORT_SIZE",
    "DLIB_DISTANCE_THRESHOLD",
    "ConfidenceCurve",
    "Decision",
    "DecisionRule",
    "DistanceThreshold",
    "Evidence",
    "IdentifyProvenance",
    "NormalisedDistance",
    "Outcome",
    "RuleRecord",
    "ShippedRules",
    "VerifyProvenance",
    "VerifyRecord",
    "check_records",
    "check_rule",
    "cohort_distance",
    "cohort_from_searches",
    "default_rule",
    "default_rule_record",
    "default_verify_threshold",
    "rule_fingerprint",
    "rule_from_dict",
    "within_verify",
]
