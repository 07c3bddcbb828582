"""What a request page says about decisions: who approved, asked for changes, rejected, cancelled or revoked.

Derived from the decisions and the audit events, never from ``decided_by``
alone: that field names whoever moved the request last (an approver, the
person who asked for changes, a break-glass user), so "Approved by" read
from it was false for a request sent back for changes. One function per
page, so every status says what happened to it and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from approvals.models import Decision, DecisionKind
from approvals.policy import OWNING_TEAM
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest
from exceptions.services.requests import REQUEST_TYPE

# Statuses only an approval leads to: the approvals of the last revision are what approved it.
APPROVED_ONCE = frozenset({RequestStatus.APPROVED, RequestStatus.ACTIVE, RequestStatus.REVOKED})


@dataclass(frozen=True)
class Person:
    name: str
    at: datetime | None = None
    role: str = ""


@dataclass(frozen=True)
class Statement:
    """One line of the page's decision facts: ``<dt>label</dt><dd id=key>lead people: reason (note)</dd>``."""

    key: str
    label: str
    lead: str
    people: tuple[Person, ...] = ()
    reason: str = ""
    note: str = ""
    at: datetime | None = None  # when nobody in particular did it (a lapse)


@dataclass(frozen=True)
class Outcome:
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    def keys(self) -> list[str]:
        return [s.key for s in self.statements]


def _role(decision: Decision) -> str:
    if decision.counts_for == OWNING_TEAM:
        return "team approver"
    return decision.counts_for


def _person(decision: Decision) -> Person:
    return Person(name=decision.actor.get_username(), at=decision.created_at, role=_role(decision))


def _last_event(events: Sequence[Any], action: str) -> Any | None:
    matching = [e for e in events if e.action == action and e.object_type == REQUEST_TYPE]
    return matching[-1] if matching else None


def _event_statement(event: Any, *, key: str, label: str, lead: str, note: str = "") -> Statement:
    return Statement(
        key=key,
        label=label,
        lead=lead,
        people=(Person(name=event.actor_label, at=event.created_at),),
        reason=event.reason,
        note=note,
    )


def request_outcome(req: ExceptionRequest, decisions: Iterable[Decision], events: Iterable[Any]) -> Outcome:
    """The statements about decisions that are true for ``req`` in its current status.

    ``decisions`` are the request's decisions oldest first; ``events`` its audit
    timeline (oldest first), for the moves no decision records: cancel,
    revoke, lapse.
    """
    decisions = list(decisions)
    events = list(events)
    current = [d for d in decisions if d.request_revision == req.revision]
    approvals = tuple(_person(d) for d in current if d.kind == DecisionKind.APPROVE)
    last = current[-1] if current else None
    status = req.status
    out: list[Statement] = []

    def approved_so_far(label: str, note: str) -> None:
        if approvals:
            out.append(Statement("approvals-so-far", label, "Approved so far by", approvals, note=note))

    if status in APPROVED_ONCE or (status == RequestStatus.EXPIRED and req.decided_by_id is not None):
        if approvals:
            out.append(Statement("approved-by", "Decision", "Approved by", approvals))
        elif hasattr(req, "breakglass") and req.decided_by is not None:
            out.append(
                Statement(
                    "breakglass-by",
                    "Decision",
                    "Opened with break-glass by",
                    (Person(req.decided_by.get_username(), req.decided_at),),
                    note="no approval; reviewed afterwards",
                )
            )
        elif req.decided_by is not None:  # decided before decisions were recorded one by one
            person = Person(req.decided_by.get_username(), req.decided_at)
            out.append(Statement("approved-by", "Decision", "Approved by", (person,), reason=req.decision_reason))
        revoked = _last_event(events, "request.revoked") if status == RequestStatus.REVOKED else None
        if revoked is not None:
            out.append(_event_statement(revoked, key="revoked-by", label="Revoked", lead="Revoked by"))
    elif status == RequestStatus.EXPIRED:
        lapsed = _last_event(events, "request.expired")
        if lapsed is not None:
            out.append(
                Statement(
                    "lapsed", "Decision", "Expired without a decision", reason=lapsed.reason, at=lapsed.created_at
                )
            )
        approved_so_far("Approved before it lapsed", "not enough to approve it")
    elif status == RequestStatus.REJECTED:
        rejections = [d for d in current if d.kind == DecisionKind.REJECT]
        if rejections:
            d = rejections[-1]
            out.append(Statement("rejected-by", "Decision", "Rejected by", (_person(d),), reason=d.reason))
    elif status in (RequestStatus.CHANGES_REQUESTED, RequestStatus.CANCELLED):
        if last is not None and last.kind == DecisionKind.REQUEST_CHANGES:
            out.append(
                Statement(
                    "changes-requested-by",
                    "Changes requested",
                    "Changes requested by",
                    (_person(last),),
                    reason=last.reason,
                )
            )
        if status == RequestStatus.CANCELLED:
            cancelled = _last_event(events, "request.cancelled")
            if cancelled is not None:
                out.append(_event_statement(cancelled, key="cancelled-by", label="Cancelled", lead="Cancelled by"))
        else:
            approved_so_far("Approved so far", "these count no more once the request is resubmitted")
    elif status == RequestStatus.PENDING:
        earlier = [d for d in decisions if d.kind == DecisionKind.REQUEST_CHANGES and d.request_revision < req.revision]
        if earlier:
            d = earlier[-1]
            out.append(
                Statement(
                    "resubmitted",
                    "Resubmitted",
                    f"Revision {req.revision}, resubmitted after changes requested by",
                    (_person(d),),
                    reason=d.reason,
                )
            )
        approved_so_far("Approved so far", "not approved until nothing is missing")
    return Outcome(tuple(out))
