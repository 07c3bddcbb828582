"""Break-glass: open an egress path at once during an incident, loudly, and review it afterwards.

A use bypasses quorum, change windows and freezes, so everything else about it
is strict: a person in a browser session (never a token), a fresh MFA step-up,
the same destination validation as a request, a short fixed lifetime, at most a
few open at once per person, a priority publish, a broadcast, and a review by a
security officer who is not the user. A drill runs the same checks and
notifications (marked DRILL) and opens nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone

from approvals.mfa import mfa_enrolled, step_up_is_fresh
from approvals.models import ApproverGroup, BreakGlassUse, ReviewOutcome
from audit.services import SYSTEM, PendingEvent, object_type_of, record_event, record_events
from exceptions.access import SECURITY_GROUP, roles_for
from exceptions.choices import DataClass, GrantStatus, Purpose, RequestStatus, RevokeKind, RiskTier
from exceptions.events import emit
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Workload
from exceptions.services import lifecycle
from exceptions.services.submissions import DestinationInput, collect_destination_errors
from foundation.actors import Actor
from foundation.logging import log_decision
from foundation.outbox.services import enqueue, enqueue_mail, nudge_relay


class StepUpRequired(PermissionDenied):
    """The actor has not passed an MFA code recently enough."""


class MfaNotEnrolled(PermissionDenied):
    """The actor has no authenticator to step up with."""


API_REFUSAL = "Break-glass is a human action: use the break-glass page in the portal, not an API token."


# --- Reads ----------------------------------------------------------------------


def access_use(user: Any, pk: int | str) -> BreakGlassUse:
    """Who sees a use (or drill): its user, security and auditors, the team's members and approvers."""
    use = BreakGlassUse.objects.select_related("user", "team", "reviewed_by", "request").filter(pk=pk).first()
    roles = roles_for(user)
    if use is None or not (use.user_id == user.pk or roles.sees_everything or use.team_id in roles.visible_team_ids):
        raise Http404("No such break-glass use.")
    return use


def breakglass_workloads(user: Any) -> QuerySet[Workload]:
    """The user's teams' workloads; a security officer may open a path for any."""
    roles = roles_for(user)
    workloads = Workload.objects.select_related("team").order_by("team__name", "name")
    if roles.is_security or roles.is_admin:
        return workloads
    return workloads.filter(team_id__in=roles.member_team_ids)


def open_uses(*, now: datetime) -> QuerySet[BreakGlassUse]:
    """Uses with a grant still open (a grant revoked on its own page closes its use too)."""
    live = Grant.objects.filter(
        request_id=OuterRef("request_id"), breakglass=True, status=GrantStatus.ACTIVE, expires_at__gt=now
    )
    return BreakGlassUse.objects.filter(drill=False, revoked_at__isnull=True).filter(Exists(live))


def active_uses(user: Any, *, now: datetime) -> QuerySet[BreakGlassUse]:
    return open_uses(now=now).filter(user=user)


def any_breakglass_active(*, now: datetime) -> bool:
    return Grant.objects.filter(breakglass=True, status=GrantStatus.ACTIVE, expires_at__gt=now).exists()


def banner(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the loud banner on every page while any break-glass grant is open.

    One indexed EXISTS (partial index ``grant_breakglass_active``) per page.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"breakglass_active": False}
    return {"breakglass_active": any_breakglass_active(now=timezone.now())}


def reviews_open(*, now: datetime) -> QuerySet[BreakGlassUse]:
    return (
        BreakGlassUse.objects.filter(drill=False, reviewed_at__isnull=True)
        .select_related("user", "team")
        .order_by("review_due_at")
    )


def metric_counts(*, now: datetime) -> dict[str, int]:
    """For /metrics: open break-glass uses, and uses awaiting review (and of those, overdue)."""
    open_reviews = BreakGlassUse.objects.filter(drill=False, reviewed_at__isnull=True)
    return {
        "active": open_uses(now=now).count(),
        "unreviewed": open_reviews.count(),
        "overdue": open_reviews.filter(review_due_at__lt=now).count(),
    }


def reviews_for(user: Any, *, now: datetime) -> list[BreakGlassUse]:
    """Unreviewed uses for the dashboard: all for security, the approver's teams otherwise."""
    roles = roles_for(user)
    uses = reviews_open(now=now)
    if not (roles.is_security or roles.is_admin):
        uses = uses.filter(team_id__in=roles.approver_team_ids)
    rows = list(uses[:50])
    for use in rows:
        use.overdue = bool(use.review_due_at and use.review_due_at < now)  # type: ignore[attr-defined]
    return rows


def drills_by_team(user: Any) -> list[dict[str, Any]]:
    """Each team the user may see with its drills, newest first, and when it last practised."""
    roles = roles_for(user)
    drills = BreakGlassUse.objects.filter(drill=True).select_related("team", "user").order_by("-created_at")
    if not roles.sees_everything:
        drills = drills.filter(team_id__in=roles.visible_team_ids)
    rows: dict[int, dict[str, Any]] = {}
    for drill in drills:
        entry = rows.setdefault(drill.team_id, {"team": drill.team, "last": drill.created_at, "drills": []})
        entry["drills"].append(drill)
    return sorted(rows.values(), key=lambda r: r["team"].name)


def security_addresses() -> list[str]:
    users = get_user_model().objects.filter(groups__name=SECURITY_GROUP, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def approver_addresses(workload: Workload) -> list[str]:
    members = ApproverGroup.objects.filter(teams=workload.team).values_list("members__email", flat=True)
    return sorted({m for m in members if m})


# --- Rules ------------------------------------------------------------------------


def check_actor(actor: Any, *, now: datetime) -> Actor:
    """Who may break glass at all: a person in a session, enrolled, with a fresh step-up."""
    if not isinstance(actor, Actor) or actor.is_token:
        raise PermissionDenied(API_REFUSAL)
    if not mfa_enrolled(actor.user):
        raise MfaNotEnrolled("Break-glass needs MFA: enrol an authenticator app first.")
    if not step_up_is_fresh(actor, now=now):
        minutes = settings.EGRESS_STEP_UP_SECONDS // 60
        raise StepUpRequired(f"Enter a code from your authenticator app (needed within the last {minutes} min).")
    return actor.as_breakglass()


def _check_form(
    *,
    actor: Actor,
    workload: Workload,
    destinations: Sequence[Mapping[str, Any] | DestinationInput],
    incident_ref: str,
    reason: str,
    duration: timedelta,
    acknowledged: bool,
) -> list[DestinationInput]:
    errors: dict[str, list[str]] = {}
    if not breakglass_workloads(actor.user).filter(pk=workload.pk).exists():
        errors["workload"] = ["Choose a workload of one of your teams (security officers may choose any)."]
    if not incident_ref.strip():
        errors["incident_ref"] = ["Name the incident (ticket or page id), so the review can find it."]
    elif len(incident_ref.strip()) > 100:
        errors["incident_ref"] = ["Keep the incident reference under 100 characters."]
    if not reason.strip():
        errors["reason"] = ["Say why the path is needed now and cannot wait for an approval."]
    maximum = timedelta(hours=settings.EGRESS_BREAKGLASS_MAX_HOURS)
    if duration <= timedelta(0) or duration > maximum:
        errors["duration"] = [f"Choose between 1 and {settings.EGRESS_BREAKGLASS_MAX_HOURS} hours; no longer."]
    if not acknowledged:
        errors["acknowledged"] = ["Confirm that security officers are told and the use is reviewed."]
    cleaned = collect_destination_errors(errors, destinations)
    if errors:
        raise ValidationError(errors)
    return cleaned


# --- Services ------------------------------------------------------------------


def use_breakglass(
    *,
    actor: Any,
    workload: Workload,
    destinations: Sequence[Mapping[str, Any] | DestinationInput],
    incident_ref: str,
    reason: str,
    duration: timedelta,
    acknowledged: bool,
    flow_started_at: datetime,
    drill: bool = False,
    now: datetime | None = None,
) -> BreakGlassUse:
    """Open the path at once (or rehearse it): grants, priority publish, broadcast, one audit event."""
    now = now or timezone.now()
    breaker = check_actor(actor, now=now)
    cleaned = _check_form(
        actor=breaker,
        workload=workload,
        destinations=destinations,
        incident_ref=incident_ref,
        reason=reason,
        duration=duration,
        acknowledged=acknowledged,
    )
    user = breaker.user
    with transaction.atomic():
        # The user row serialises one person's concurrent uses, so the limit holds under races.
        get_user_model().objects.select_for_update().get(pk=user.pk)
        if drill:
            _check_drill_throttle(workload, now=now)
        limit = settings.EGRESS_BREAKGLASS_MAX_ACTIVE_PER_USER
        if not drill and active_uses(user, now=now).count() >= limit:
            raise ValidationError(
                {"__all__": [f"You already hold {limit} open break-glass paths; revoke one, or ask security."]}
            )
        use = BreakGlassUse.objects.create(
            user=user,
            team=workload.team,
            workload_name=workload.name,
            drill=drill,
            incident_ref=incident_ref.strip(),
            reason=reason.strip(),
            destinations=[d.__dict__ for d in cleaned],
            duration=duration,
            flow_started_at=min(flow_started_at, now),
            created_at=now,
            expires_at=None if drill else now + duration,
            review_due_at=None if drill else now + timedelta(hours=settings.EGRESS_BREAKGLASS_REVIEW_HOURS),
        )
        grants: list[Grant] = []
        if not drill:
            use.request, grants = _open_path(actor=breaker, workload=workload, cleaned=cleaned, use=use, now=now)
            use.save(update_fields=["request"])
        _broadcast(use, workload=workload, grants=grants)
        if not drill:
            emit(
                "breakglass.used",
                occurrences=[
                    (
                        f"breakglass:{use.pk}",
                        {
                            "breakglass": {
                                "id": use.pk,
                                "user": user.get_username(),
                                "team": workload.team.slug,
                                "workload": workload.identity,
                                "incident_ref": use.incident_ref,
                                "reason": use.reason,
                                "destinations": use.destinations,
                                "expires_at": use.expires_at.isoformat() if use.expires_at else None,
                                "request": use.request_id,
                                "grants": [g.pk for g in grants],
                            }
                        },
                    )
                ],
            )
        record_event(
            actor=breaker,
            action="breakglass.drilled" if drill else "breakglass.used",
            obj=use,
            after={**use.snapshot(), "grants": [g.pk for g in grants]},
            reason=use.reason,
        )
    log_decision(
        "breakglass",
        actor=breaker,
        identity=workload.identity,
        outcome="drill" if drill else "opened",
        reason=use.reason,
        incident=use.incident_ref,
        breakglass_use=use.pk,
    )
    return use


def _check_drill_throttle(workload: Workload, *, now: datetime) -> None:
    """One drill per workload per EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES: each one mails every
    security officer and approver on the priority queue, so repeating it would be a flood.
    The workload row serialises drills by different people, so two cannot slip in together."""
    Workload.objects.select_for_update().filter(pk=workload.pk).first()
    interval = timedelta(minutes=settings.EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES)
    last = (
        BreakGlassUse.objects.filter(
            drill=True, team_id=workload.team_id, workload_name=workload.name, created_at__gt=now - interval
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last is not None:
        minutes = settings.EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES
        raise ValidationError(
            {
                "__all__": [
                    f"{workload.name} was drilled at {last:%Y-%m-%d %H:%M} UTC; the next drill for it may start "
                    f"after {last + interval:%Y-%m-%d %H:%M} UTC (one drill per workload every {minutes} min)."
                ]
            },
            code="drill_throttled",
        )


def queue_priority_publish(*, trigger: str, key: str) -> None:
    """A publish of its own on the `priority` queue: no coalescing window."""
    enqueue(kind=settings.EGRESS_BREAKGLASS_PUBLISH_KIND, payload={"trigger": trigger}, idempotency_key=key)
    _nudge_priority_relay()


def _nudge_priority_relay() -> None:
    # Woken at commit rather than at its next 2-second tick.
    if settings.OUTBOX_NUDGE:
        queue = settings.OUTBOX_KIND_QUEUES[settings.EGRESS_BREAKGLASS_PUBLISH_KIND]
        transaction.on_commit(lambda: nudge_relay(queue))


def _open_path(
    *, actor: Actor, workload: Workload, cleaned: list[DestinationInput], use: BreakGlassUse, now: datetime
) -> tuple[ExceptionRequest, list[Grant]]:
    user = actor.user
    request = ExceptionRequest.objects.create(
        workload=workload,
        requester=user,
        purpose=Purpose.OTHER,
        data_class=DataClass.INTERNAL,
        justification=f"Break-glass for incident {use.incident_ref}: {use.reason}",
        ticket_ref=use.incident_ref,
        lifetime=use.duration,
        status=RequestStatus.ACTIVE,
        risk_tier=RiskTier.HIGH,
        risk_reasons=["break-glass: no approval, reviewed afterwards"],
        decided_by=user,
        decided_at=now,
        decision_reason="break-glass",
    )
    RequestDestination.objects.bulk_create(RequestDestination(request=request, **d.__dict__) for d in cleaned)
    grants = lifecycle.issue(
        actor=actor,
        request=request,
        destinations=cleaned,
        valid_from=now,
        expires_at=now + use.duration,
        now=now,
        breakglass=True,
        trigger=f"break-glass #{use.pk}",
        publish=lambda trigger: queue_priority_publish(trigger=trigger, key=f"breakglass:{use.pk}:publish"),
    )
    return request, grants


def _url(name: str, *args: Any) -> str:
    return f"{settings.EGRESS_BASE_URL.rstrip('/')}{reverse(name, args=args)}"


def _broadcast(use: BreakGlassUse, *, workload: Workload, grants: list[Grant]) -> None:
    tag = "[egress DRILL]" if use.drill else "[egress BREAK-GLASS]"
    enqueue_mail(
        to=security_addresses() + approver_addresses(workload),
        subject=f"{tag} {use.user.get_username()} opened {workload.name} for incident {use.incident_ref}",
        template="emails/breakglass_used",
        context={"use": use, "workload": workload, "grants": grants, "url": _url("breakglass-detail", use.pk)},
        idempotency_key=f"breakglass:{use.pk}:broadcast",
        kind=settings.EGRESS_BREAKGLASS_MAIL_KIND,
    )
    _nudge_priority_relay()


def _broadcast_revoke(use: BreakGlassUse, *, closed_by: Any, reason: str, grants: int) -> None:
    """The closing is told to the same people, on the same priority mail kind, as the opening."""
    workload = use.request.workload if use.request is not None else None
    enqueue_mail(
        to=security_addresses() + (approver_addresses(workload) if workload is not None else []),
        subject=f"[egress BREAK-GLASS CLOSED] {closed_by.get_username()} closed {use.workload_name} "
        f"early (incident {use.incident_ref})",
        template="emails/breakglass_revoked",
        context={
            "use": use,
            "closed_by": closed_by,
            "reason": reason,
            "grants": grants,
            "url": _url("breakglass-detail", use.pk),
        },
        idempotency_key=f"breakglass:{use.pk}:revoke-broadcast",
        kind=settings.EGRESS_BREAKGLASS_MAIL_KIND,
    )
    _nudge_priority_relay()


def _lock_use(use: BreakGlassUse) -> BreakGlassUse:
    return BreakGlassUse.objects.select_for_update().select_related("user", "team").get(pk=use.pk)


def revoke_denial(user: Any, use: BreakGlassUse) -> str | None:
    if use.user_id == user.pk or roles_for(user).is_security:
        return None
    return "Only the person who broke the glass or a security officer may revoke it early."


def revoke_breakglass(*, actor: Any, use: BreakGlassUse, reason: str, now: datetime | None = None) -> BreakGlassUse:
    """Close the path early (there is no extension: a new break-glass is needed)."""
    now = now or timezone.now()
    user = actor.user if isinstance(actor, Actor) else actor
    if not reason.strip():
        raise ValidationError({"reason": ["Say why the path is closed early."]})
    with transaction.atomic():
        locked = _lock_use(use)
        denial = revoke_denial(user, locked)
        if denial:
            raise PermissionDenied(denial)
        if locked.drill or locked.revoked_at is not None or (locked.expires_at and locked.expires_at <= now):
            raise ValidationError({"__all__": ["This break-glass is no longer open."]})
        # Each grant: revoked with kind breakglass_closed, its audit event, grant.revoked, and
        # the priority publish (the request closes with its last grant).
        closed = lifecycle.revoke(
            actor=actor,
            grants=Grant.objects.filter(request_id=locked.request_id, breakglass=True),
            kind=RevokeKind.BREAKGLASS_CLOSED,
            reason=reason.strip(),
            now=now,
            revoked_by=user,
            trigger=f"break-glass #{locked.pk} revoked",
            publish=lambda trigger: queue_priority_publish(
                trigger=trigger, key=f"breakglass:{locked.pk}:revoke-publish"
            ),
        )
        locked.revoked_at = now
        locked.save(update_fields=["revoked_at"])
        _broadcast_revoke(locked, closed_by=user, reason=reason.strip(), grants=len(closed))
        record_event(
            actor=actor,
            action="breakglass.revoked",
            obj=locked,
            after={"revoked_at": now, "grants_closed": len(closed)},
            reason=reason.strip(),
        )
    return locked


def review_denial(user: Any, use: BreakGlassUse) -> str | None:
    if use.drill:
        return "Drills are not reviewed."
    if use.user_id == user.pk:
        return "You cannot review your own break-glass; another security officer must."
    if not roles_for(user).is_security:
        return "Only security officers review break-glass uses."
    return None


def review_breakglass(
    *, actor: Any, use: BreakGlassUse, outcome: str, notes: str, now: datetime | None = None
) -> BreakGlassUse:
    """Acknowledge the use, or flag it as misuse (notes required)."""
    now = now or timezone.now()
    user = actor.user if isinstance(actor, Actor) else actor
    notes = (notes or "").strip()
    if outcome not in ReviewOutcome.values:
        raise ValidationError({"outcome": [f"Choose one of: {', '.join(ReviewOutcome.values)}."]})
    if outcome == ReviewOutcome.MISUSE and not notes:
        raise ValidationError({"notes": ["Say what was misused, so the team can follow it up."]})
    with transaction.atomic():
        locked = _lock_use(use)
        denial = review_denial(user, locked)
        if denial:
            raise PermissionDenied(denial)
        if locked.reviewed_at is not None:
            raise ValidationError({"__all__": ["This use has been reviewed already."]})
        locked.reviewed_by, locked.reviewed_at = user, now
        locked.review_outcome, locked.review_notes = outcome, notes
        locked.save(update_fields=["reviewed_by", "reviewed_at", "review_outcome", "review_notes"])
        record_event(
            actor=actor,
            action="breakglass.reviewed",
            obj=locked,
            after={"outcome": outcome, "late": bool(locked.review_due_at and now > locked.review_due_at)},
            reason=notes,
        )
    return locked


def remind_unreviewed(*, now: datetime | None = None) -> int:
    """Remind security officers of each unreviewed use, at most once per reminder interval."""
    now = now or timezone.now()
    quiet = now - timedelta(hours=settings.EGRESS_BREAKGLASS_REMINDER_HOURS)
    addresses = security_addresses()
    with transaction.atomic():
        due = list(
            reviews_open(now=now)
            .select_for_update(skip_locked=True, of=("self",))
            .filter(created_at__lte=quiet)
            .exclude(reminded_at__gt=quiet)
        )
        for use in due:
            enqueue_mail(
                to=addresses,
                subject=f"[egress] Break-glass #{use.pk} by {use.user.get_username()} awaits review",
                template="emails/breakglass_review_reminder",
                context={
                    "use": use,
                    "overdue": use.review_due_at and now > use.review_due_at,
                    "url": _url("breakglass-detail", use.pk),
                },
                idempotency_key=f"breakglass:{use.pk}:reminder:{now:%Y%m%d%H}",
            )
        BreakGlassUse.objects.filter(pk__in=[u.pk for u in due]).update(reminded_at=now)
        record_events(
            [
                PendingEvent(
                    actor=SYSTEM,
                    action="breakglass.review_reminded",
                    object_type=object_type_of(use),
                    object_id=str(use.pk),
                    after={"reminded_at": now},
                )
                for use in due
            ]
        )
    return len(due)
