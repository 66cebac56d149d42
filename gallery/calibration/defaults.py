"""The rule shipped with the package, learned on LFW View 1 (see scripts/learn_default_rule.py)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from gallery.calibration.rules import NormalisedDistance

DEFAULT_RULE_FILE = "default_rule.json"


@functools.cache
def default_rule_record() -> dict[str, Any]:
    """The shipped record: ``rule`` (a NormalisedDistance as a dict), ``provenance`` and ``verify``."""
    return json.loads(resources.files("gallery").joinpath("data", DEFAULT_RULE_FILE).read_text())


@functools.cache
def default_rule() -> NormalisedDistance:
    """The decision rule in force until the operator calibrates on their own photos."""
    return NormalisedDistance.from_dict(default_rule_record()["rule"])


def default_verify_threshold() -> float:
    """The shipped 1:1 distance threshold (its target FMR is in ``default_rule_record()['verify']``)."""
    return float(default_rule_record()["verify"]["threshold"])
