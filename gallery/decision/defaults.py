"""The rules shipped with the package, learned on LFW View 1 (see scripts/learn_default_rule.py).

In force until the operator calibrates on their own photos; ``gallery/data/default_rule.json``
holds ``rule`` (the identify rule's dict), ``provenance`` and ``verify`` (``threshold`` and
its ``provenance``).
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
    IdentifyProvenance,
    RuleRecord,
    VerifyProvenance,
    VerifyRecord,
)

DEFAULT_RULE_FILE = "default_rule.json"


@dataclass(frozen=True)
class ShippedRules:
    """The shipped identify rule and verify threshold, each with where it was learned."""

    identify: RuleRecord
    verify: VerifyRecord


@functools.cache
def _shipped_file() -> dict[str, Any]:
    return json.loads(resources.files("gallery").joinpath("data", DEFAULT_RULE_FILE).read_text())


@functools.cache
def default_rule() -> NormalisedDistance:
    """The decision rule in force until the operator calibrates on their own photos."""
    return NormalisedDistance.from_dict(_shipped_file()["rule"])


@functools.cache
def default_rule_record() -> ShippedRules:
    """The shipped rules with their provenance, whose ``source`` is ``"shipped default"``."""
    data = _shipped_file()
    return ShippedRules(
        identify=RuleRecord(
            default_rule(), IdentifyProvenance.from_dict({"source": SHIPPED_DEFAULT, **data["provenance"]})
        ),
        verify=VerifyRecord(
            float(data["verify"]["threshold"]),
            VerifyProvenance.from_dict({"source": SHIPPED_DEFAULT, **data["verify"]["provenance"]}),
        ),
    )


def default_verify_threshold() -> float:
    """The shipped 1:1 distance threshold (its target FMR is in ``default_rule_record().verify.provenance``)."""
    return default_rule_record().verify.threshold
