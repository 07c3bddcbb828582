"""Stale revocation: access nobody uses is revoked, after a notice and a grace period.

A grant is stale when its tier's window (``EGRESS_STALE_DAYS_<TIER>``, default
30 days) passed without observed traffic. Only grants older than the window,
and only identities a gateway has reported on for the whole window and still
reports on: a missing feed never revokes. The feed must come from one gateway whose scope
(``traffic.scope``) covers the identity, for the whole window: another environment's or
team's gateway cannot make a feed look fresh. A stale grant gets a notice (mail to
the requester and the team); unused still after the grace period
(``EGRESS_STALE_GRACE_DAYS``) it is revoked with reason "stale", audited and
published, and ``grant.revoked`` goes out with reason kind "stale" (through
``exceptions.services.lifecycle``, the one writer of a grant's status). "Keep"
on the notice, with a reason, restarts the window once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audit.services import SYSTEM, Actor, PendingEvent, record_event, record_events
from exceptions.access import revoke_denial
from exceptions.choices import GrantStatus, RevokeKind, RiskTier
from exceptions.models import Grant
from exceptions.reminders import recipients_for
from exceptions.services import lifecycle
from exceptions.services.lifecycle import GRANT_TYPE
from foundation.outbox.services import enqueue_mail
from traffic.models import GrantUsage, IdentityFeed, StaleNotice
from traffic.scope import GatewayScope, Owner

STALE_REASON = "stale"
BATCH = 2000


@dataclass
class SweepResult:
    noticed: int = 0
    cleared: int = 0
    revoked: int = 0


def window(tier: str) -> timedelta:
    days: dict[str, int] = settings.EGRESS_STALE_DAYS_BY_TIER
    return timedelta(days=days.get(tier, settings.EGRESS_STALE_DAYS))


def _used_since(since: datetime) -> Exists:
    return Exists(GrantUsage.objects.filter(grant_id=OuterRef("pk"), day__gte=since.date(), last_seen__gte=since))


def _fresh_since(now: datetime) -> datetime:
    return now - timedelta(hours=settings.EGRESS_STALE_FEED_FRESH_HOURS)


def stale_candidates(*, tier: str, now: datetime) -> Q:
    """Active grants of ``tier`` older than the window, on a live feed that covered the whole
    window (whose gateway's scope ``covered_by_scope`` then checks)."""
    cutoff = now - window(tier)
    covered = IdentityFeed.objects.filter(
        identity=OuterRef("identity"), first_seen__lte=cutoff, last_seen__gte=_fresh_since(now)
    )
    no_open_notice = ~Q(stale_notice__status=StaleNotice.Status.NOTICED) & ~Q(
        stale_notice__status=StaleNotice.Status.KEPT, stale_notice__kept_at__gt=cutoff
    )
    return (
        Q(status=GrantStatus.ACTIVE, request__risk_tier=tier, valid_from__lte=cutoff)
        & Q(Exists(covered))
        & no_open_notice
        & ~Q(_used_since(cutoff))
    )


def covered_by_scope(grants: list[tuple[Grant, datetime]]) -> set[int]:
    """The ids of the grants that, as of the time paired with each, had a live feed over their
    tier's whole window from one gateway whose scope covers the grant's workload (the
    chokepoint, ``GatewayScope.refusal``, decides). Grants come with ``request`` and
    ``workload__team`` loaded."""
    if not grants:
        return set()
    fresh = timedelta(hours=settings.EGRESS_STALE_FEED_FRESH_HOURS)
    feeds: dict[str, list[tuple[datetime, datetime, GatewayScope]]] = defaultdict(list)
    for feed in IdentityFeed.objects.filter(
        identity__in={g.identity for g, _ in grants}, last_seen__gte=min(at for _, at in grants) - fresh
    ).select_related("gateway"):
        feeds[feed.identity].append((feed.first_seen, feed.last_seen, GatewayScope.of(feed.gateway)))
    covered = set()
    for grant, at in grants:
        cutoff, workload = at - window(grant.request.risk_tier), grant.workload
        owner = Owner(workload.environment, workload.team.slug, workload.namespace)
        if any(
            first <= cutoff and last >= at - fresh and s.refusal(grant.identity, owner) is None
            for first, last, s in feeds.get(grant.identity, ())
        ):
            covered.add(grant.pk)
    return covered


def _notice_mail(grants: list[Grant], *, revoke_after: datetime, now: datetime) -> None:
    first = grants[0]
    base = settings.EGRESS_BASE_URL.rstrip("/")
    enqueue_mail(
        to=recipients_for(first),
        subject=f"[Egress Portal] {len(grants)} unused grant(s) of {first.workload.name} will be revoked "
        f"on {revoke_after:%Y-%m-%d}",
        template="emails/stale_notice",
        context={
            "grants": grants,
            "workload": first.workload,
            "revoke_after": revoke_after,
            "days": window(first.request.risk_tier).days,
            "links": [f"{base}{g.get_absolute_url()}" for g in grants],
        },
        idempotency_key=f"stale-notice:{first.request_id}:{now:%Y-%m-%d}",
    )


def _notice(*, now: datetime, result: SweepResult) -> None:
    revoke_after = now + timedelta(days=settings.EGRESS_STALE_GRACE_DAYS)
    for tier in RiskTier.values:
        after_id = 0
        while True:
            with transaction.atomic():
                batch = list(
                    Grant.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(stale_candidates(tier=tier, now=now), id__gt=after_id)
                    .select_related("request__requester", "workload__team")
                    .prefetch_related("workload__team__members")
                    .order_by("id")[:BATCH]
                )
                if not batch:
                    break
                after_id, fetched = batch[-1].pk, len(batch)
                covered = covered_by_scope([(g, now) for g in batch])
                batch = [g for g in batch if g.pk in covered]
                if not batch:
                    continue
                for grant in batch:
                    StaleNotice.objects.update_or_create(
                        grant=grant,
                        defaults={
                            "status": StaleNotice.Status.NOTICED,
                            "noticed_at": now,
                            "revoke_after": revoke_after,
                        },
                    )
                record_events(
                    [
                        PendingEvent(
                            actor=SYSTEM,
                            action="grant.stale_noticed",
                            object_type=GRANT_TYPE,
                            object_id=str(g.pk),
                            after={"revoke_after": revoke_after, "window_days": window(tier).days},
                        )
                        for g in batch
                    ]
                )
                by_request: dict[int, list[Grant]] = defaultdict(list)
                for grant in batch:
                    by_request[grant.request_id].append(grant)
                for grants in by_request.values():
                    _notice_mail(grants, revoke_after=revoke_after, now=now)
                result.noticed += len(batch)
            if fetched < BATCH:
                break


def _clear_resumed(*, now: datetime, result: SweepResult) -> None:
    """Notices whose grant saw traffic again are withdrawn."""
    with transaction.atomic():
        resumed = list(
            StaleNotice.objects.select_for_update(skip_locked=True)
            .filter(status=StaleNotice.Status.NOTICED)
            .filter(
                Exists(
                    GrantUsage.objects.filter(
                        grant_id=OuterRef("grant_id"),
                        day__gte=OuterRef("noticed_at__date"),
                        last_seen__gte=OuterRef("noticed_at"),
                    )
                )
            )
        )
        if not resumed:
            return
        StaleNotice.objects.filter(pk__in=[n.pk for n in resumed], status=StaleNotice.Status.NOTICED).update(
            status=StaleNotice.Status.CLEARED
        )
        record_events(
            [
                PendingEvent(
                    actor=SYSTEM,
                    action="grant.stale_cleared",
                    object_type=GRANT_TYPE,
                    object_id=str(n.grant_id),
                    before={"stale_notice": StaleNotice.Status.NOTICED},
                    after={"stale_notice": StaleNotice.Status.CLEARED},
                )
                for n in resumed
            ]
        )
        result.cleared += len(resumed)


def _revoke_due(*, now: datetime, result: SweepResult) -> None:
    """Revoke noticed grants past their grace that stayed unused, when the notice stood on a
    covering gateway's feed (a notice opened on another gateway's word revokes nothing)."""
    after_id = 0
    while True:
        with transaction.atomic():
            due = list(
                StaleNotice.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    status=StaleNotice.Status.NOTICED,
                    revoke_after__lte=now,
                    grant__status=GrantStatus.ACTIVE,
                    id__gt=after_id,
                )
                .exclude(
                    Exists(
                        GrantUsage.objects.filter(grant_id=OuterRef("grant_id"), last_seen__gte=OuterRef("noticed_at"))
                    )
                )
                .select_related("grant__request", "grant__workload__team")
                .order_by("id")[:BATCH]
            )
            if not due:
                return
            after_id, fetched = due[-1].pk, len(due)
            # The evidence the notice stood on: a covering gateway's feed over the window before it.
            covered = covered_by_scope([(n.grant, n.noticed_at) for n in due])
            due = [n for n in due if n.grant_id in covered]
            if not due:
                continue
            reason = f"{STALE_REASON}: no traffic observed since the notice of {due[0].noticed_at:%Y-%m-%d}"
            StaleNotice.objects.filter(pk__in=[n.pk for n in due]).update(status=StaleNotice.Status.REVOKED)
            revoked = lifecycle.revoke(
                actor=SYSTEM,
                grants=[n.grant_id for n in due],
                kind=RevokeKind.STALE,
                reason=STALE_REASON,
                audit_reason=reason,
                now=now,
            )
            result.revoked += len(revoked)
        if fetched < BATCH:
            return


def sweep_stale_grants(*, now: datetime | None = None) -> SweepResult:
    """Withdraw notices whose traffic resumed, revoke the ones past their grace, notice the newly stale."""
    now = now or timezone.now()
    result = SweepResult()
    _clear_resumed(now=now, result=result)
    _revoke_due(now=now, result=result)
    _notice(now=now, result=result)
    return result


def keep_grant(*, actor: Actor, grant: Grant, reason: str, now: datetime | None = None) -> StaleNotice:
    """ "Keep" on a stale notice: the window restarts now, once per grant; audited with the reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the grant is still needed although no traffic was seen."]})
    now = now or timezone.now()
    with transaction.atomic():
        notice = (
            StaleNotice.objects.select_for_update().select_related("grant__workload__team").filter(grant=grant).first()
        )
        if notice is None or notice.status != StaleNotice.Status.NOTICED:
            raise ValidationError({"grant": ["This grant has no open stale notice."]})
        if notice.kept_at is not None:
            raise ValidationError({"grant": ["This grant was kept once already; request a new grant if it is needed."]})
        # Whoever may revoke the grant may also keep it: the owning team, its approvers, security.
        if revoke_denial(actor, notice.grant) is not None:
            raise PermissionDenied("Only the owning team, its approvers or a security officer may keep this grant.")
        updated = StaleNotice.objects.filter(pk=notice.pk, status=StaleNotice.Status.NOTICED, kept_at=None).update(
            status=StaleNotice.Status.KEPT, kept_at=now, kept_by=actor, keep_reason=reason
        )
        if updated != 1:
            raise ValidationError({"grant": ["The notice changed while you were keeping it; reload and try again."]})
        record_event(
            actor=actor,
            action="grant.stale_kept",
            obj=notice.grant,
            before={"stale_notice": StaleNotice.Status.NOTICED},
            after={"stale_notice": StaleNotice.Status.KEPT, "kept_at": now},
            reason=reason,
        )
        notice.refresh_from_db()
    return notice
