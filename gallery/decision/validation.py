"""Checks a stored rule before anything decides with it: complete, of a known kind, every number finite and in range.

A rule is a JSON record that anyone who can write the gallery's database can change, and a
damaged one must not decide: a NaN threshold compares false with every distance, so a rule
holding one matched every face (fail open). Every reader of a rule (the gallery's settings,
the shipped file) and ``calibrate`` before it writes one goes through these checks, which
raise ``RuleInvalid`` naming the first field at fault.

The ranges:

- ``distance_threshold``: ``threshold`` finite and > 0;
- ``normalised_distance``: ``sizes`` positive integers, strictly ascending, at least one;
  ``thresholds`` finite and > 0 and ``strengths`` in [0, 1], one per size;
  ``beyond_threshold`` null or finite and > 0; ``reference`` finite and > 0;
  ``runner_up_exponent`` and ``cohort_exponent`` finite and >= 0; ``target_fpir`` in (0, 1);
  ``tie_ratio`` in (0, 1]; ``within_variance`` absent, null (a rule from before it: people scored
  by their nearest photo) or finite and >= 0; ``margin`` absent, null (thresholds at the point
  estimate) or an object with ``confidence`` in (0, 1), ``sample_divisor`` finite and >= 1,
  ``fpir_bounds`` in [0, 1], one per size, and ``sample_divisors`` absent, null or finite and >= 1,
  one per size; ``review`` absent, null (no review table) or an object with ``fpir`` in (0, 1)
  above ``target_fpir``, ``thresholds`` finite and > 0, one per size, and ``beyond_threshold``
  null or finite and > 0; ``domain`` absent, null (no domain check) or an object with ``quantile``
  in (0, 0.5), ``sizes`` integers >= 2 strictly ascending, at least one, and ``limits`` finite and
  > 0, one per size; ``band_confidence`` absent, null (``confidence`` at
  every size) or an object with ``from_sizes`` positive integers strictly ascending from 1 and
  as many ``curves``, each checked as ``confidence`` is; ``confidence``: ``margins`` finite and non-decreasing,
  ``probabilities`` in [0, 1] and non-increasing, as many of each, at least one;
- the verify record's ``threshold``: finite and > 0;
- both records: a JSON object with the rule (or threshold) and a ``provenance`` object holding
  every field its provenance type requires.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from gallery.errors import RuleInvalid

KNOWN_KINDS = ("distance_threshold", "normalised_distance")


def check_rule_dict(data: Any) -> None:
    """Raise ``RuleInvalid`` (``setting`` None) unless ``data`` is a complete, sane rule of a known kind."""
    if not isinstance(data, Mapping):
        _invalid(f"the rule is {json_kind(data)}, not an object")
    kind = data.get("kind")
    if kind == "distance_threshold":
        _number(data, "threshold", _positive)
    elif kind == "normalised_distance":
        _check_normalised(data)
    else:
        _invalid(f"unknown rule kind {kind!r} (this version knows {', '.join(KNOWN_KINDS)})")


def check_verify_threshold(value: Any, name: str = "threshold") -> float:
    """The verify threshold as a float; ``RuleInvalid`` unless it is a finite number > 0."""
    return _value(value, name, _positive)


def check_provenance(data: Any, provenance_type: type) -> None:
    """Raise ``RuleInvalid`` unless ``data`` is an object holding every field ``provenance_type`` requires."""
    if not isinstance(data, Mapping):
        _invalid(f"the provenance is {json_kind(data)}, not an object")
    required = [
        f.name
        for f in dataclasses.fields(provenance_type)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        _invalid(f"the provenance lacks {', '.join(missing)}")


# ---- the learned rule ---------------------------------------------------------------------


def _check_normalised(data: Mapping[str, Any]) -> None:
    sizes = _numbers(data, "sizes", _positive_integer)
    if not sizes:
        _invalid("sizes is empty")
    if any(later <= earlier for earlier, later in itertools.pairwise(sizes)):
        _invalid(f"sizes {sizes} are not strictly ascending")
    for name, condition in (("thresholds", _positive), ("strengths", _unit)):
        values = _numbers(data, name, condition)
        if len(values) != len(sizes):
            _invalid(f"{name} has {len(values)} values for {len(sizes)} sizes")
    if data.get("beyond_threshold", None) is not None:
        _number(data, "beyond_threshold", _positive)
    _number(data, "reference", _positive)
    _number(data, "runner_up_exponent", _non_negative)
    _number(data, "cohort_exponent", _non_negative)
    _number(data, "target_fpir", _open_unit)
    _number(data, "tie_ratio", _tie)
    if data.get("within_variance", None) is not None:
        _number(data, "within_variance", _non_negative)
    if data.get("margin", None) is not None:
        margin = data["margin"]
        if not isinstance(margin, Mapping):
            _invalid(f"margin is {json_kind(margin)}, not an object")
        _number(margin, "confidence", _open_unit, prefix="margin.")
        _number(margin, "sample_divisor", _at_least_one, prefix="margin.")
        bounds = _numbers(margin, "fpir_bounds", _probability, prefix="margin.")
        if len(bounds) != len(sizes):
            _invalid(f"margin.fpir_bounds has {len(bounds)} values for {len(sizes)} sizes")
        if margin.get("sample_divisors", None) is not None:
            divisors = _numbers(margin, "sample_divisors", _at_least_one, prefix="margin.")
            if len(divisors) != len(sizes):
                _invalid(f"margin.sample_divisors has {len(divisors)} values for {len(sizes)} sizes")
    _check_curve(_field(data, "confidence"), "confidence")
    if data.get("review", None) is not None:
        review = data["review"]
        if not isinstance(review, Mapping):
            _invalid(f"review is {json_kind(review)}, not an object")
        fpir = _number(review, "fpir", _open_unit, prefix="review.")
        if fpir <= _number(data, "target_fpir", _open_unit):
            _invalid(f"review.fpir {fpir!r} is not above the target FPIR")
        looser = _numbers(review, "thresholds", _positive, prefix="review.")
        if len(looser) != len(sizes):
            _invalid(f"review.thresholds has {len(looser)} values for {len(sizes)} sizes")
        if review.get("beyond_threshold", None) is not None:
            _number(review, "beyond_threshold", _positive, prefix="review.")
    if data.get("domain", None) is not None:
        _check_domain(data["domain"])
    if data.get("band_confidence", None) is not None:
        bands = data["band_confidence"]
        if not isinstance(bands, Mapping):
            _invalid(f"band_confidence is {json_kind(bands)}, not an object")
        starts = _numbers(bands, "from_sizes", _positive_integer, prefix="band_confidence.")
        if not starts or starts[0] != 1 or any(later <= earlier for earlier, later in itertools.pairwise(starts)):
            _invalid(f"band_confidence.from_sizes {starts} do not ascend strictly from 1")
        curves = _field(bands, "curves", "band_confidence.")
        if not isinstance(curves, list) or len(curves) != len(starts):
            _invalid(f"band_confidence.curves is not a list of {len(starts)} curves")
        for i, curve in enumerate(curves):
            _check_curve(curve, f"band_confidence.curves[{i}]")


def _check_domain(domain: Any) -> None:
    if not isinstance(domain, Mapping):
        _invalid(f"domain is {json_kind(domain)}, not an object")
    quantile = _number(domain, "quantile", _open_unit, prefix="domain.")
    if quantile >= 0.5:
        _invalid(f"domain.quantile {quantile!r} is not below 0.5")
    sizes = _numbers(domain, "sizes", _positive_integer, prefix="domain.")
    if not sizes or sizes[0] < 2 or any(later <= earlier for earlier, later in itertools.pairwise(sizes)):
        _invalid(f"domain.sizes {sizes} do not ascend strictly from 2 or more")
    limits = _numbers(domain, "limits", _positive, prefix="domain.")
    if len(limits) != len(sizes):
        _invalid(f"domain.limits has {len(limits)} values for {len(sizes)} sizes")


def _check_curve(curve: Any, name: str) -> None:
    if not isinstance(curve, Mapping):
        _invalid(f"{name} is {json_kind(curve)}, not an object")
    margins = _numbers(curve, "margins", _finite, prefix=f"{name}.")
    probabilities = _numbers(curve, "probabilities", _probability, prefix=f"{name}.")
    if not margins or len(margins) != len(probabilities):
        _invalid(f"{name} has {len(margins)} margins and {len(probabilities)} probabilities")
    if any(later < earlier for earlier, later in itertools.pairwise(margins)):
        _invalid(f"{name}.margins are not ascending")
    if any(later > earlier for earlier, later in itertools.pairwise(probabilities)):
        _invalid(f"{name}.probabilities are not non-increasing (a closer match must not be less sure)")


# ---- fields and numbers -------------------------------------------------------------------

Condition = tuple[Callable[[float], bool], str]

_finite: Condition = (lambda v: True, "a finite number")
_positive: Condition = (lambda v: v > 0, "a finite number > 0")
_non_negative: Condition = (lambda v: v >= 0, "a finite number >= 0")
_at_least_one: Condition = (lambda v: v >= 1, "a finite number >= 1")
_unit: Condition = (lambda v: 0 <= v <= 1, "in [0, 1]")
_probability: Condition = (lambda v: 0 <= v <= 1, "a probability in [0, 1]")
_open_unit: Condition = (lambda v: 0 < v < 1, "in (0, 1)")
_tie: Condition = (lambda v: 0 < v <= 1, "in (0, 1]")
_positive_integer: Condition = (lambda v: v >= 1 and float(v).is_integer(), "a positive integer")


def _field(data: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    if name not in data:
        _invalid(f"the field {prefix}{name} is missing")
    return data[name]


def _number(data: Mapping[str, Any], name: str, condition: Condition, prefix: str = "") -> float:
    return _value(_field(data, name, prefix), f"{prefix}{name}", condition)


def _numbers(data: Mapping[str, Any], name: str, condition: Condition, prefix: str = "") -> list[float]:
    values = _field(data, name, prefix)
    if not isinstance(values, list):
        _invalid(f"{prefix}{name} is {json_kind(values)}, not a list")
    return [_value(v, f"{prefix}{name}[{i}]", condition) for i, v in enumerate(values)]


def _value(value: Any, name: str, condition: Condition) -> float:
    holds, wanted = condition
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _invalid(f"{name} is {json_kind(value)}, not a number")
    number = float(value)
    if not math.isfinite(number) or not holds(number):
        _invalid(f"{name} is {value!r}, must be {wanted}")
    return number


def json_kind(value: Any) -> str:
    """What a JSON value is, in words, for a message (``null``, ``the string 'abc'``, ``a list``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"the number {value!r}" if isinstance(value, (int, float)) else type(value).__name__


def _invalid(problem: str) -> NoReturn:
    raise RuleInvalid(problem, problem=problem)
