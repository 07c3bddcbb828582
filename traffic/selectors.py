"""Reads of observed traffic, gateways and operations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, QuerySet, Sum
from django.utils import timezone

from exceptions.models import Grant
from foundation.outbox.models import OutboxMessage, OutboxStatus
from traffic.models import DeniedTraffic, EgressGateway, GrantUsage, IngestBatch
from traffic.scope import GatewayScope


def grant_last_seen(grant: Grant) -> datetime | None:
    value: datetime | None = GrantUsage.objects.filter(grant=grant).aggregate(last=Max("last_seen"))["last"]
    return value


def grants_last_seen(grant_ids: list[int]) -> dict[int, datetime]:
    """Last observed traffic per grant, for a page or API list in one query."""
    rows = GrantUsage.objects.filter(grant_id__in=grant_ids).values("grant_id").annotate(last=Max("last_seen"))
    return {row["grant_id"]: row["last"] for row in rows}


def grant_traffic_by_day(grant: Grant, *, days: int = 30) -> QuerySet[GrantUsage]:
    since = timezone.now().date() - timedelta(days=days)
    return GrantUsage.objects.filter(grant=grant, day__gte=since).order_by("-day")


@dataclass(frozen=True)
class DeniedDestination:
    host: str
    port: int
    attempts: int
    last_seen: datetime


def top_denied(identity: str, *, days: int = 30, limit: int = 10) -> list[DeniedDestination]:
    since = timezone.now().date() - timedelta(days=days)
    rows = (
        DeniedTraffic.objects.filter(identity=identity, day__gte=since)
        .values("host", "port")
        .annotate(attempts=Sum("count"), last=Max("last_seen"))
        .order_by("-attempts", "host", "port")[:limit]
    )
    return [DeniedDestination(r["host"], r["port"], r["attempts"], r["last"]) for r in rows]


@dataclass(frozen=True)
class GatewayIngest:
    gateway: EgressGateway
    records_last_hour: int
    per_second: float
    rejected_last_hour: int
    # Of the rejected: records about identities outside its scope, and OPA events naming a
    # bundle revision the portal never made (a misrouted or a forged feed shows here).
    out_of_scope_last_hour: int = 0
    unknown_revision_last_hour: int = 0
    scope: str = ""


def gateway_ingest(*, now: datetime | None = None) -> list[GatewayIngest]:
    """Per gateway: records kept in the last hour (the ingest rate) and the last record's time."""
    now = now or timezone.now()
    since = now - timedelta(hours=1)
    totals = {
        row["gateway_id"]: row
        for row in IngestBatch.objects.filter(received_at__gte=since)
        .values("gateway_id")
        .annotate(
            accepted=Sum("accepted"),
            rejected=Sum("rejected"),
            out_of_scope=Sum("out_of_scope"),
            unknown_revision=Sum("unknown_revision"),
        )
    }
    result = []
    for gateway in EgressGateway.objects.select_related("owner_team"):
        row = totals.get(gateway.pk, {})
        accepted = int(row.get("accepted") or 0)
        result.append(
            GatewayIngest(
                gateway,
                accepted,
                accepted / 3600,
                int(row.get("rejected") or 0),
                out_of_scope_last_hour=int(row.get("out_of_scope") or 0),
                unknown_revision_last_hour=int(row.get("unknown_revision") or 0),
                scope=GatewayScope.of(gateway).describe(),
            )
        )
    return result


def outbox_backlog(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    pending = OutboxMessage.objects.filter(status=OutboxStatus.PENDING)
    by_kind = list(pending.values("kind").annotate(count=Count("id"), oldest=Min("available_at")).order_by("kind"))
    oldest_due = pending.filter(available_at__lte=now).order_by("available_at").first()
    parked = OutboxMessage.objects.filter(status=OutboxStatus.PARKED).order_by("-id")[:50]
    return {"by_kind": by_kind, "oldest_due": oldest_due, "parked": list(parked), "now": now}
