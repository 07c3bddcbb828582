"""The decision gate: every decision on a request passes through ``decide``.

Approve (narrowing included), reject and request changes, from the page, the
API, ``seed_demo`` and any later channel (chat, delegated integrations), are
checked here, in one place and in this order, with the request row locked:

1. the request's state: only pending requests are decided (``TransitionError``,
   a 409 in the API);
2. who may decide, under the approval policy and separation of duties: the
   clauses of ``approvals.eligibility``, the same ones the approver's queue is
   computed from (``Refusal`` with the failing clause's code, a 403);
3. MFA at the decision: a rule with ``mfa: true`` needs an MFA step-up passed
   in a browser session within ``EGRESS_STEP_UP_SECONDS`` before the decision
   (``StepUpRequired``). An integration token can never carry one; a job or a
   fixture acting as a bare user carries none either. "Approvers must enrol
   MFA" (``EGRESS_MFA_REQUIRED_FOR_APPROVERS``) is an eligibility clause, so it
   holds on every channel.

Step 3 applies to every kind of decision, not only to approvals. A rejection
ends the request and a request for changes throws away the approvals given so
far: with a stolen token or an unattended session either one could veto or
stall every request under the rule, which is the risk ``mfa: true`` is there
to guard. One rule for all decisions is also the one the policy file and the
pages can state plainly: "MFA at the decision".

A refused decision writes nothing (no ``Decision`` row, no audit event, no
notification). An accepted one writes its ``Decision`` row and exactly one
audit event, which records the channel (``via``, the token's name) and the
time of the step-up (``mfa_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from approvals import notifications
from approvals.access import ApprovalState, approval_slot, approval_state, first_failing
from approvals.eligibility import MFA_STEP_UP_REQUIRED
from approvals.golive import go_live_for
from approvals.mfa import step_up_is_fresh, step_up_url
from approvals.models import Decision, DecisionKind
from approvals.policy import Policy, Requirement, current_policy
from audit.services import record_event
from exceptions.access import access_request
from exceptions.choices import RequestStatus
from exceptions.events import emit_request
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.grants import issue_grants, supersede_renewed_grant
from exceptions.services.requests import lock_request, move_request, narrow_request
from exceptions.state import TransitionError
from foundation.actors import SESSION, TOKEN, Actor, user_of
from foundation.logging import log_request_decision
from foundation.problems import Refusal

APPROVE = "approve"
REJECT = "reject"
REQUEST_CHANGES = "request_changes"
ACTIONS = (APPROVE, REJECT, REQUEST_CHANGES)
STEP_UP_CODE = MFA_STEP_UP_REQUIRED


class StepUpRequired(Refusal):
    """The rule needs MFA at the decision and the actor has no fresh step-up (never, through a token)."""

    def __init__(self, *, request: ExceptionRequest, rule: str, via: str, mfa_at: datetime | None) -> None:
        page = request.get_absolute_url()
        window = settings.EGRESS_STEP_UP_SECONDS
        if via == TOKEN:
            detail = (
                f"Rule {rule} needs MFA at the decision, which an API token cannot give: a person decides request "
                f"#{request.pk} in the portal, after an MFA step-up ({settings.EGRESS_BASE_URL}{page})."
            )
        elif via != SESSION:
            detail = (
                f"Rule {rule} needs MFA at the decision, which only a browser session gives: a person decides "
                f"request #{request.pk} in the portal ({settings.EGRESS_BASE_URL}{page})."
            )
        elif mfa_at is None:
            detail = f"Rule {rule} needs MFA at the decision: enter a code from your authenticator app first."
        else:
            detail = (
                f"Rule {rule} needs MFA at the decision: your last code was more than {window} seconds ago; "
                "enter a new one."
            )
        super().__init__(
            detail,
            code=STEP_UP_CODE,
            rule=rule,
            step_up_url=f"{settings.EGRESS_BASE_URL}{step_up_url(page)}",
            decide_url=f"{settings.EGRESS_BASE_URL}{page}",
            step_up_seconds=window,
        )
        self.rule = rule


@dataclass(frozen=True)
class Outcome:
    """What a decision did: the request as it is now, and the grants an approval issued."""

    request: ExceptionRequest
    state: ApprovalState
    grants: list[Grant] = field(default_factory=list)


def _as_actor(actor: Any) -> Actor:
    # A bare user (a job, a fixture, seed_demo) acts with no session and no step-up.
    return actor if isinstance(actor, Actor) else Actor(user=actor, via="direct")


def check(actor: Any, request: ExceptionRequest, action: str, *, now: datetime | None = None) -> Requirement | None:
    """Raise why ``actor`` may not take ``action`` on ``request`` now; for an approval, the slot it fills.

    Reads only: views call it before showing a confirmation, ``decide`` calls it
    again on the locked row.
    """
    if action not in ACTIONS:
        raise ValueError(f"Unknown decision {action!r}; one of {', '.join(ACTIONS)}.")
    now = now or timezone.now()
    if request.status != RequestStatus.PENDING:
        raise TransitionError(f"Request #{request.pk} is {request.status} now; only pending requests are decided.")
    state = approval_state(request)
    user = user_of(actor)
    failing = first_failing(user, request, state, approve=action == APPROVE)
    if failing is not None:
        code, why = failing
        if code != MFA_STEP_UP_REQUIRED:
            raise Refusal(why, code=code, rule=state.rule.name)
        # A token on an `mfa: true` rule: the same refusal as a stale session, with the page to go to.
    if state.rule.mfa:
        who = _as_actor(actor)
        if not step_up_is_fresh(who, now=now):
            raise StepUpRequired(request=request, rule=state.rule.name, via=who.via, mfa_at=who.mfa_at)
    return approval_slot(user, request, state)[0] if action == APPROVE else None


def access_to_decide(actor: Any, pk: int | str, action: str, *, now: datetime | None = None) -> ExceptionRequest:
    """The request the actor may take ``action`` on now: 404 if they may not see it, then ``check``'s refusals."""
    request = access_request(user_of(actor), pk)
    check(actor, request, action, now=now)
    return request


def decide(
    *,
    actor: Any,
    request: ExceptionRequest,
    action: str,
    reason: str = "",
    lifetime: timedelta | None = None,
    keep_destination_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Take ``action`` on ``request`` as ``actor``, after every check above; the one way a decision is written.

    An approval may narrow the request first (a shorter ``lifetime``, only the
    destinations in ``keep_destination_ids``); it issues the grants when it
    completes the rule's quorum. Reject and request changes need a reason.
    """
    reason = (reason or "").strip()
    now = now or timezone.now()
    policy = current_policy()
    with transaction.atomic():
        locked = lock_request(request)
        requirement = check(actor, locked, action, now=now)
        # Only then the input: someone who may not decide hears that, not how to word a reason.
        if action == REJECT and not reason:
            raise ValidationError(
                {"reason": ["Say why the request is rejected, so the requester can fix it or look elsewhere."]}
            )
        if action == REQUEST_CHANGES and not reason:
            raise ValidationError({"reason": ["Say what should change, so the requester can edit and resubmit."]})
        if action == APPROVE:
            assert requirement is not None
            outcome = _approve(
                actor=actor,
                locked=locked,
                requirement=requirement,
                reason=reason,
                lifetime=lifetime,
                keep_destination_ids=keep_destination_ids,
                policy=policy,
                now=now,
            )
        else:
            outcome = _decide_against(actor=actor, locked=locked, action=action, reason=reason, policy=policy, now=now)
    log_request_decision(
        {APPROVE: "approve", REJECT: DecisionKind.REJECT, REQUEST_CHANGES: DecisionKind.REQUEST_CHANGES}[action],
        actor=actor,
        request=outcome.request,
        reason=reason,
        rule=outcome.state.rule.name,
    )
    return outcome


def channel(actor: Any) -> dict[str, Any]:
    """How the decision was made, for its audit event: the channel, the token's name, the step-up's time."""
    who = _as_actor(actor)
    result: dict[str, Any] = {"via": who.via, "mfa_at": who.mfa_at}
    if who.is_token:
        result["token"] = who.token_name
    return result


# --- The writers (reached only through ``decide``) ------------------------------


def _record_decision(
    locked: ExceptionRequest,
    user: Any,
    kind: str,
    counts_for: str,
    reason: str,
    state: ApprovalState,
    policy: Policy,
    now: datetime,
) -> Decision:
    """The decision's row, with the rule and policy revision it was made under."""
    return Decision.objects.create(
        request=locked,
        actor=user,
        kind=kind,
        counts_for=counts_for,
        reason=reason,
        rule=state.rule.name,
        policy_revision=policy.revision,
        request_revision=locked.revision,
        created_at=now,
    )


def _approve(
    *,
    actor: Any,
    locked: ExceptionRequest,
    requirement: Requirement,
    reason: str,
    lifetime: timedelta | None,
    keep_destination_ids: Sequence[int] | None,
    policy: Policy,
    now: datetime,
) -> Outcome:
    user = user_of(actor)
    if lifetime is not None or keep_destination_ids is not None:
        narrow_request(
            actor=actor,
            request=locked,
            lifetime=lifetime,
            keep_destination_ids=keep_destination_ids,
            reason=reason,
            now=now,
        )
        # Narrowing can change which rule applies (a wildcard dropped): the gate asks again.
        requirement_after = check(actor, locked, APPROVE, now=now)
        assert requirement_after is not None
        requirement = requirement_after
    state = approval_state(locked, policy=policy)
    cap = state.rule.max_lifetime
    if cap is not None and locked.lifetime > cap:
        raise ValidationError(
            {
                "lifetime": [
                    f"Rule {state.rule.name} allows at most {cap.days} days; shorten the lifetime when approving "
                    "or request changes."
                ]
            }
        )
    _record_decision(locked, user, DecisionKind.APPROVE, requirement.group, reason, state, policy, now)
    state = approval_state(locked, policy=policy)
    if not state.complete:
        record_event(
            actor=actor,
            action="request.approval_added",
            obj=locked,
            after={
                "counts_for": requirement.group,
                "rule": state.rule.name,
                "policy_revision": policy.revision,
                "missing": [g.requirement.group for g in state.missing],
                **channel(actor),
            },
            reason=reason,
        )
        notifications.tell_requester(
            locked,
            what="approval_added",
            key=f"r{locked.revision}:{user.pk}",
            approver=user.get_username(),
            state=state,
        )
        notifications.ask_for_missing_approvals(locked, state=state, event=f"after-{user.pk}")
        return Outcome(request=locked, state=state)
    go_live = go_live_for(locked, now=now, state=state)
    if go_live.at is None:
        raise ValidationError(
            {"go_live": [f"This approval completes the request, but it cannot go live: {go_live.reason}."]}
        )
    valid_from, _ = locked.grant_window(now, not_before=go_live.at)
    target = RequestStatus.ACTIVE if valid_from <= now else RequestStatus.APPROVED
    before = locked.status
    move_request(locked, target, now=now, decided_by=user, decided_at=now, decision_reason=reason)
    record_event(
        actor=actor,
        action="request.approved",
        obj=locked,
        before={"status": before},
        after={
            "status": locked.status,
            "decided_by": user.get_username(),
            "approved_by": state.approvers,
            "rule": state.rule.name,
            "policy_revision": policy.revision,
            "go_live": valid_from,
            "go_live_reason": go_live.reason,
            **channel(actor),
        },
        reason=reason,
    )
    grants = issue_grants(actor=actor, request=locked, now=now, not_before=go_live.at)
    supersede_renewed_grant(actor=actor, request=locked, starts_at=valid_from, now=now)
    emit_request("request.approved", locked, revision=True)
    notifications.tell_requester(
        locked,
        what="approved" if target == RequestStatus.ACTIVE else "scheduled",
        key=f"r{locked.revision}",
        state=state,
        go_live=valid_from,
        go_live_reason=go_live.reason,
    )
    return Outcome(request=locked, state=state, grants=grants)


_AGAINST = {
    REJECT: (DecisionKind.REJECT, RequestStatus.REJECTED, "request.rejected"),
    REQUEST_CHANGES: (DecisionKind.REQUEST_CHANGES, RequestStatus.CHANGES_REQUESTED, "request.changes_requested"),
}


def _decide_against(
    *, actor: Any, locked: ExceptionRequest, action: str, reason: str, policy: Policy, now: datetime
) -> Outcome:
    kind, target, event = _AGAINST[action]
    user = user_of(actor)
    state = approval_state(locked, policy=policy)
    _record_decision(locked, user, kind, "", reason, state, policy, now)
    before = locked.status
    move_request(locked, target, now=now, decided_by=user, decided_at=now, decision_reason=reason)
    record_event(
        actor=actor,
        action=event,
        obj=locked,
        before={"status": before},
        after={
            "status": locked.status,
            "decided_by": user.get_username(),
            "rule": state.rule.name,
            "policy_revision": policy.revision,
            **channel(actor),
        },
        reason=reason,
    )
    notifications.tell_requester(
        locked, what=target, key=f"r{locked.revision}", decided_by=user.get_username(), reason=reason
    )
    emit_request(event, locked, revision=True)
    return Outcome(request=locked, state=state)
