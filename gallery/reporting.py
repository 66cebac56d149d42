"""The facade's methods that report on the gallery: what it holds, which rules decide, what it recorded.

A part of ``Gallery`` (its base class), kept apart because none of it decides or changes
anything: ``info`` (with the domain check), ``domain_status``, ``audit_log`` and ``audit_status``.
"""

from __future__ import annotations

from datetime import datetime

from gallery.arguments import whole_number
from gallery.audit import AuditStatus, AuditWriter
from gallery.cohorts import CohortDistances
from gallery.decision import RuleRecord, VerifyRecord, rule_fingerprint
from gallery.errors import InvalidArgument, RuleInvalid
from gallery.results import DomainStatus, GalleryInfo
from gallery.rules_in_force import RulesInForce
from gallery.store import AuditEvent, Store

# The largest LIMIT SQLite and PostgreSQL take (a signed 64-bit integer): beyond it, "all" is meant.
MAX_AUDIT_LIMIT = 2**63 - 1


class Reporting:
    """``Gallery``'s info and audit methods (``Gallery`` sets these attributes)."""

    _store: Store
    _rules: RulesInForce
    _audit: AuditWriter
    _cohorts: CohortDistances

    def audit_status(self) -> AuditStatus:
        """This process's audit events: the policy, how many wait to be written and how many were lost."""
        return self._audit.status()

    def audit_log(
        self,
        *,
        limit: int | None = 100,
        action: str | None = None,
        person: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        """The audit log, newest first: what was decided and changed, by whom and when (never a face).

        Events this process queued are written first, so a call sees its own identify.

        Args:
            limit: at most this many events (None: all).
            action: only ``enroll``, ``identify``, ``verify``, ``remove``, ``reembed`` or ``calibrate``.
            person: events naming this person, under any id they were enrolled with (also after
                their removal), and identifies in which any face matched them.
            outcome: events with this outcome, or an identify in which any face had it
                (``match``, ``unknown``, ``ambiguous``, ``no_face``, ``enrolled``, ``removed``, ...).
            since, until: ``since <= time < until``; timezone-aware datetimes.

        Raises:
            InvalidArgument: a limit that is not a whole number from 0 to 2**63 - 1, or a naive datetime.
        """
        if limit is not None:
            limit = whole_number("limit", limit, minimum=0, maximum=MAX_AUDIT_LIMIT)
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.utcoffset() is None:
                raise InvalidArgument(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)), got {moment}")
        self._audit.flush()
        return self._store.audit_log(
            limit=limit, action=action, person=person, outcome=outcome, since=since, until=until
        )

    def domain_status(self) -> DomainStatus | None:
        """The identify rule's domain check on the gallery now (``info().domain`` alone, cheaply: kept until the
        faces change). None: nothing to check (one person or none, or a rule without a check).

        Raises:
            RuleInvalid: the stored identify rule cannot be trusted.
        """
        return self._cohorts.domain(self._rules.identify_rule())

    def info(self) -> GalleryInfo:
        """Where the gallery lives, what it holds and which rules decide (with where they were learned).

        Never fails on a damaged rule: a rule that cannot be trusted is None and ``rule_error``
        says why (identify, verify and enroll refuse until it is replaced).
        """
        stats = self._store.stats()
        errors: list[str] = []
        rule: RuleRecord | None = None
        verify: VerifyRecord | None = None
        try:
            rule = self._rules.identify_record()
        except RuleInvalid as error:
            errors.append(str(error))
        try:
            verify = self._rules.verify_record()
        except RuleInvalid as error:
            errors.append(str(error))
        return GalleryInfo(
            stats.home,
            stats.people,
            stats.faces,
            stats.model,
            rule,
            rule.rule.describe() if rule else None,
            rule_fingerprint(rule.rule) if rule else None,
            verify,
            stats.schema_revision,
            "; ".join(errors) or None,
            stats.database,
            self._store.pending_erasure(),
            None if rule is None else self._cohorts.domain(rule.rule),
        )
