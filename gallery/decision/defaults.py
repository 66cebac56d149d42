"""The rules shipped with the package, learned on LFW View 1 (see scripts/learn_default_rule.py).

In force until the operator calibrates on their own photos; ``gallery/data/default_rule.json``
holds ``rule`` (the identify rule's dict), ``provenance`` and ``verify`` (``threshold`` and
its ``provenance``). They are checked as a stored rule is (``gallery.decision.validation``):
a damaged installation refuses to decide rather than deciding with a damaged rule.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from gallery.decision.normalised import NormalisedDistance
from gallery.decision.records import (
    SHIPPED_DEFAULT,
    RuleRecord,
    VerifyRecord,
)
from gallery.errors import RuleInvalid

DEFAULT_RULE_FILE = "default_rule.json"


@dataclass(frozen=True)
class ShippedRules:
    """The shipped identify rule and verify threshold, each with where it was learned."""

    identify: RuleRecord
    verify: VerifyRecord


@functools.cache
def _shipped_file() -> dict[str, Any]:
    return json.loads(resources.files("gallery").joinpath("data", DEFAULT_RULE_FILE).read_text())


def shipped_rules(data: Any) -> ShippedRules:
    """The shipped file's contents as records, checked.

    Raises:
        RuleInvalid: the file is damaged (``setting`` None); reinstalling gallery restores it.
    """
    try:
        identify = RuleRecord.from_dict(
            {"rule": data["rule"], "provenance": {"source": SHIPPED_DEFAULT, **data["provenance"]}}
        )
        verify = VerifyRecord.from_dict(
            {**data["verify"], "provenance": {"source": SHIPPED_DEFAULT, **data["verify"]["provenance"]}}
        )
    except (RuleInvalid, KeyError, TypeError) as error:
        problem = error.problem if isinstance(error, RuleInvalid) else f"no {error}"
        raise RuleInvalid(
            f"the rules shipped with gallery (gallery/data/{DEFAULT_RULE_FILE}) are damaged: {problem}; "
            "nothing is decided with them; reinstall gallery",
            problem=problem,
        ) from None
    if not isinstance(identify.rule, NormalisedDistance):
        raise RuleInvalid(f"the shipped identify rule is a {identify.rule.kind}, not a normalised_distance")
    return ShippedRules(identify, verify)


@functools.cache
def default_rule_record() -> ShippedRules:
    """The shipped rules with their provenance, whose ``source`` is ``"shipped default"``."""
    return shipped_rules(_shipped_file())


def default_rule() -> NormalisedDistance:
    """The decision rule in force until the operator calibrates on their own photos."""
    rule = default_rule_record().identify.rule
    assert isinstance(rule, NormalisedDistance)  # checked by shipped_rules
    return rule


def default_verify_threshold() -> float:
    """The shipped 1:1 distance threshold (its target FMR is in ``default_rule_record().verify.provenance``)."""
    return default_rule_record().verify.threshold
