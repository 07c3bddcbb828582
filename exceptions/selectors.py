"""Reads for pages, the API and jobs; no writes here."""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.db.models import Count, Q, QuerySet

from audit.models import AuditEvent
from audit.selectors import timeline
from bundle.records import BundleOptions, GrantRecord
from exceptions import hooks
from exceptions.access import roles_for, visible_grants, visible_requests
from exceptions.choices import GrantStatus
from exceptions.models import (
    BUNDLE_SERVED_ACTION,
    BundlePublication,
    ExceptionRequest,
    Grant,
    PolicyDrift,
    ProviderRangeSet,
    ServedBundle,
    Workload,
)

GRANT_VIEWS = ("active", "expiring", "scheduled", "expired", "revoked")


def approvable_requests(user: Any) -> QuerySet[ExceptionRequest]:
    """The pending requests ``user`` may approve now: the approval policy's answer (the API's ``?decidable=true``)."""
    return hooks.approvals.get().approvable_requests(user)


def request_list(user: Any, *, scope: str = "mine", status: str = "") -> QuerySet[ExceptionRequest]:
    requests = visible_requests(user)
    if scope == "mine":
        requests = requests.filter(requester_id=user.pk)
    if status:
        requests = requests.filter(status=status)
    return (
        requests.select_related("workload__team", "requester")
        .annotate(destination_count=Count("destinations"))
        .order_by("-created_at", "-id")
    )


def grant_list(user: Any, *, view: str, now: datetime) -> QuerySet[Grant]:
    grants = visible_grants(user).select_related("workload__team", "request")
    if view == "active":
        return grants.filter(status=GrantStatus.ACTIVE).order_by("expires_at", "id")
    if view == "expiring":
        horizon = now + timedelta(days=settings.EGRESS_EXPIRING_SOON_DAYS)
        return grants.filter(status=GrantStatus.ACTIVE, expires_at__lte=horizon).order_by("expires_at", "id")
    if view == "scheduled":
        return grants.filter(status=GrantStatus.SCHEDULED).order_by("valid_from", "id")
    if view == "expired":
        return grants.filter(status=GrantStatus.EXPIRED).order_by("-expires_at", "-id")
    if view == "revoked":
        return grants.filter(status=GrantStatus.REVOKED).order_by("-revoked_at", "-id")
    raise ValueError(f"Unknown grant view {view!r}; use one of {', '.join(GRANT_VIEWS)}.")


def request_timeline(request: ExceptionRequest) -> QuerySet[AuditEvent]:
    grant_ids = list(request.grants.values_list("id", flat=True))
    return timeline({"exceptions.exceptionrequest": [request.pk], "exceptions.grant": grant_ids})


def latest_provider_ranges() -> dict[str, ProviderRangeSet]:
    """The newest stored range file of each provider."""
    latest: dict[str, ProviderRangeSet] = {}
    for provider in ProviderRangeSet.Provider.values:
        version = ProviderRangeSet.objects.filter(provider=provider).first()
        if version is not None:
            latest[provider] = version
    return latest


def open_grants() -> QuerySet[Grant]:
    return Grant.objects.filter(status__in=[GrantStatus.SCHEDULED, GrantStatus.ACTIVE])


@functools.cache
def _served_bundle_sql(vendor: str) -> tuple[str, tuple[Any, ...]]:
    query = ServedBundle.objects.filter(pk=ServedBundle.ONE).values_list("revision", "sha256").query
    return query.sql_with_params()


def served_bundle() -> tuple[str, str] | None:
    """The revision and SHA-256 of the OPA archive the bundle endpoint serves: one primary-key row.

    Every poll asks this, so the queryset's SQL is built once per process and run
    through a plain cursor: building it each time cost more than the query.
    """
    sql, params = _served_bundle_sql(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


def served_archive() -> tuple[str, str, bytes] | None:
    """The served revision, SHA-256 and archive bytes, read together (one query)."""
    row = (
        ServedBundle.objects.filter(pk=ServedBundle.ONE).values_list("revision", "sha256", "artifact__archive").first()
    )
    return None if row is None else (row[0], row[1], bytes(row[2]))


def open_grant_ids() -> list[int]:
    """The ids of the open grants: what changed since the last read, cheaply (publishing).

    The queryset's own SQL through a plain cursor: at 100,000 grants Django's
    row iterator costs several times the query.
    """
    ids = open_grants().order_by("id").values_list("id", flat=True)
    sql, params = ids.query.sql_with_params()
    with connections[ids.db].cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# Past this many audit events since the last read, reading every open grant again is cheaper.
CHANGED_SINCE_LIMIT = 20_000


def open_grants_changed_since(seq: int) -> set[int] | None:
    """Open grants whose own row, request, workload or team has an audit event after ``seq``.

    Every change of a grant's window (rescheduled, shortened, superseded) and of what a
    bundle record names (a workload's identity, its team) writes an audit event in its
    transaction, so these are the only cached records that can be stale. None when more
    than CHANGED_SINCE_LIMIT events were written since: read everything instead.
    """
    events = list(
        AuditEvent.objects.filter(seq__gt=seq).values_list("object_type", "object_id")[: CHANGED_SINCE_LIMIT + 1]
    )
    if len(events) > CHANGED_SINCE_LIMIT:
        return None
    about: dict[str, set[int]] = {}
    for object_type, object_id in events:
        if object_id.isascii() and object_id.isdigit():
            about.setdefault(object_type, set()).add(int(object_id))
    by_field = {
        "exceptions.grant": "id__in",
        "exceptions.exceptionrequest": "request_id__in",
        "exceptions.workload": "workload_id__in",
        "exceptions.team": "workload__team_id__in",
    }
    changed: set[int] = set()
    for object_type, lookup in by_field.items():
        if about.get(object_type):
            changed.update(open_grants().filter(**{lookup: sorted(about[object_type])}).values_list("id", flat=True))
    return changed


def service_cidrs(service: str, ranges: dict[str, ProviderRangeSet]) -> tuple[str, ...]:
    """The CIDRs of a provider service ("aws:S3/eu-west-1") in the newest range file."""
    provider, _, key = service.partition(":")
    version = ranges.get(provider)
    return tuple(version.services.get(key, ())) if version is not None else ()


def bundle_records(*, identity: str | None = None, ids: Collection[int] | None = None) -> list[GrantRecord]:
    """Open grants (scheduled or active) as the compiler's frozen records."""
    grants = open_grants()
    if identity is not None:
        grants = grants.filter(identity=identity)
    if ids is not None:
        grants = grants.filter(id__in=list(ids))
    rows = grants.values_list(
        "id",
        "identity",
        "host",
        "port",
        "protocol",
        "valid_from",
        "expires_at",
        "tls_required",
        "request_id",
        "request__decided_by__username",
        "workload__name",
        "workload__namespace",
        "workload__service_account",
        "workload__team__slug",
        "service",
    ).order_by("id")
    ranges = latest_provider_ranges()
    return [
        GrantRecord(
            id=row[0],
            identity=row[1],
            host=row[2],
            port=row[3],
            protocol=row[4],
            valid_from=row[5],
            expires_at=row[6],
            tls_required=row[7],
            request_id=row[8],
            decided_by=row[9] or "",
            workload=row[10],
            namespace=row[11],
            service_account=row[12],
            team=row[13] or "",
            service=row[14],
            cidrs=service_cidrs(row[14], ranges) if row[14] else (),
        )
        for row in rows.iterator(chunk_size=5000)
    ]


def explainable_identities(user: Any) -> QuerySet[Workload]:
    """Workloads whose identity the explain page offers this user: their teams' (all for security)."""
    roles = roles_for(user)
    workloads = (
        Workload.objects.all() if roles.sees_everything else Workload.objects.filter(team_id__in=roles.visible_team_ids)
    )
    return workloads.select_related("team").order_by("team__name", "name")


def active_person(name_or_email: str) -> Any | None:
    """The active user with this username, or else the one with this e-mail (case-insensitive);
    None when there is none, or when several people share the e-mail."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True)
    value = name_or_email.strip()
    by_name = users.filter(username=value).first()
    if by_name is not None or "@" not in value:
        return by_name
    matches = list(users.filter(email__iexact=value)[:2])
    return matches[0] if len(matches) == 1 else None


def filter_requests(
    requests: QuerySet[ExceptionRequest],
    *,
    ticket_ref: str | None = None,
    status: str | None = None,
    team: str | None = None,
    workload: int | None = None,
    requester: str | None = None,
    environment: str | None = None,
    updated_since: datetime | None = None,
    decidable: bool | None = None,
    user: Any = None,
    **_paging: Any,
) -> QuerySet[ExceptionRequest]:
    """The API list's filters over requests the caller may already see (paging keys are ignored).

    ``decidable`` keeps the pending requests ``user`` may approve: exactly
    those whose ``allowed_actions`` contain ``approve``.
    """
    if decidable:
        requests = requests.filter(pk__in=approvable_requests(user).values("pk"))
    if ticket_ref is not None:
        requests = requests.filter(ticket_ref=ticket_ref.strip())
    if status is not None:
        requests = requests.filter(status=status)
    if team is not None:
        requests = requests.filter(workload__team__slug=team)
    if workload is not None:
        requests = requests.filter(workload_id=workload)
    if requester is not None:
        requests = requests.filter(Q(requester__username=requester) | Q(requester__email__iexact=requester))
    if environment is not None:
        requests = requests.filter(workload__environment=environment)
    if updated_since is not None:
        requests = requests.filter(updated_at__gte=updated_since)
    return requests


def bundle_options() -> BundleOptions:
    """The compiler's options from settings and the newest provider range files."""
    overrides = (item.partition("=") for item in settings.EGRESS_CODEOWNERS.split(",") if "=" in item)
    return BundleOptions(
        istio_namespace=settings.ISTIO_NAMESPACE,
        max_object_bytes=settings.EGRESS_BUNDLE_MAX_OBJECT_BYTES,
        security_owner=settings.EGRESS_CODEOWNERS_SECURITY,
        owner_template=settings.EGRESS_CODEOWNERS_TEAM,
        owners=tuple(sorted((team.strip(), owner.strip()) for team, _, owner in overrides)),
        repository_prefix=settings.POLICY_REPO_SUBDIR,
        provider_ranges=tuple(
            (provider, version.sync_token, version.published)
            for provider, version in sorted(latest_provider_ranges().items())
        ),
    )


def known_bundle_revisions(revisions: Collection[str]) -> set[str]:
    """Those of ``revisions`` the portal made. Every publish stores its archive for the bundle
    endpoint before it pushes, so each publication's revision was served, a failed push's too;
    each revision the endpoint served has its ``bundle.served`` audit event, kept after its
    archive is pruned (a fresh install's first poll serves one before any publication). An
    engine's decision naming any other revision did not run the portal's policy."""
    wanted = list(revisions)
    made = set(BundlePublication.objects.filter(revision__in=wanted).values_list("revision", flat=True))
    if missing := [revision for revision in wanted if revision not in made]:
        served = AuditEvent.objects.filter(action=BUNDLE_SERVED_ACTION, after__revision__in=missing)
        made.update(str(after["revision"]) for after in served.values_list("after", flat=True) if after)
    return made


def recent_policy_drifts(*, limit: int = 10) -> list[PolicyDrift]:
    """The newest drifts on the policy branch (the operations page)."""
    return list(PolicyDrift.objects.order_by("-detected_at", "-id")[:limit])
