"""The request and grant state machines: explicit tables of allowed transitions."""

from __future__ import annotations

from exceptions.choices import GrantStatus, RequestStatus
from foundation.errors import TransitionError

REQUEST_TRANSITIONS: dict[str, frozenset[str]] = {
    RequestStatus.DRAFT: frozenset({RequestStatus.PENDING, RequestStatus.CANCELLED}),
    RequestStatus.PENDING: frozenset(
        {
            RequestStatus.APPROVED,
            RequestStatus.ACTIVE,
            RequestStatus.REJECTED,
            RequestStatus.CANCELLED,
            RequestStatus.CHANGES_REQUESTED,
            # No decision for EGRESS_PENDING_EXPIRY_DAYS: the request lapses.
            RequestStatus.EXPIRED,
        }
    ),
    RequestStatus.CHANGES_REQUESTED: frozenset({RequestStatus.PENDING, RequestStatus.CANCELLED}),
    RequestStatus.APPROVED: frozenset({RequestStatus.ACTIVE, RequestStatus.EXPIRED, RequestStatus.REVOKED}),
    RequestStatus.ACTIVE: frozenset({RequestStatus.EXPIRED, RequestStatus.REVOKED}),
    RequestStatus.EXPIRED: frozenset(),
    RequestStatus.REVOKED: frozenset(),
    RequestStatus.REJECTED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
}

GRANT_TRANSITIONS: dict[str, frozenset[str]] = {
    GrantStatus.SCHEDULED: frozenset({GrantStatus.ACTIVE, GrantStatus.EXPIRED, GrantStatus.REVOKED}),
    GrantStatus.ACTIVE: frozenset({GrantStatus.EXPIRED, GrantStatus.REVOKED}),
    GrantStatus.EXPIRED: frozenset(),
    GrantStatus.REVOKED: frozenset(),
}

# A grant is born scheduled (its start lies ahead) or active.
GRANT_INITIAL_STATUSES = frozenset({GrantStatus.SCHEDULED, GrantStatus.ACTIVE})

OPEN_REQUEST_STATUSES = frozenset({RequestStatus.DRAFT, RequestStatus.PENDING, RequestStatus.CHANGES_REQUESTED})
OPEN_GRANT_STATUSES = frozenset({GrantStatus.SCHEDULED, GrantStatus.ACTIVE})


def check_request_transition(current: str, target: str) -> None:
    if target not in REQUEST_TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(REQUEST_TRANSITIONS.get(current, frozenset()))) or "none (final state)"
        raise TransitionError(
            f"A request cannot go from {current} to {target}; from {current} it may go to: {allowed}."
        )


def check_grant_transition(current: str, target: str) -> None:
    if target not in GRANT_TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(GRANT_TRANSITIONS.get(current, frozenset()))) or "none (final state)"
        raise TransitionError(f"A grant cannot go from {current} to {target}; from {current} it may go to: {allowed}.")
