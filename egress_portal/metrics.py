"""Prometheus metrics, computed from the database at scrape time (every worker sees the same numbers)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from approvals.breakglass import metric_counts
from audit.models import AuditChainHead
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.models import BundlePublication, ExceptionRequest, Grant
from foundation.bearer import has_bearer_token
from foundation.outbox.models import OutboxMessage, OutboxOutcome, OutboxStatus, OutboxTally
from outcomes.policy_update import policy_update_buckets
from outcomes.selectors import time_to_approve_buckets
from traffic.models import DeniedTraffic, GatewayKind, IngestBatch


def time_to_approve_histogram() -> HistogramMetricFamily:
    """Submitted to approved, by risk tier (three values: the label's cardinality is bounded)."""
    family = HistogramMetricFamily(
        "egress_time_to_approve_seconds", "Time from submission to approval of exception requests.", labels=["tier"]
    )
    for tier, (buckets, total) in time_to_approve_buckets().items():
        family.add_metric([tier], buckets=buckets, sum_value=total)
    return family


INGEST_OUTCOMES = ("accepted", "duplicates", "ignored", "rejected")


def ingestion_counters() -> Iterator[CounterMetricFamily]:
    """Records gateways sent, by source, gateway kind and outcome (2 x 4 x 4 series at most: no
    gateway names, hosts or identities as labels), and denied attempts kept (one series)."""
    family = CounterMetricFamily(
        "egress_ingested_records",
        "Decision-log events and flow records received from egress points, by outcome.",
        labels=["source", "gateway_kind", "outcome"],
    )
    rows = (
        IngestBatch.objects.values_list("source", "gateway__kind")
        .annotate(**{name: Sum(name) for name in INGEST_OUTCOMES})
        .order_by()
    )
    found = {(source, kind): numbers for source, kind, *numbers in rows}
    for source in ("opa", "flows"):
        for kind in GatewayKind.values:
            numbers = found.get((source, kind), [0] * len(INGEST_OUTCOMES))
            for outcome, value in zip(INGEST_OUTCOMES, numbers, strict=True):
                family.add_metric([source, kind, outcome], value or 0)
    yield family
    denied = DeniedTraffic.objects.aggregate(total=Sum("count"))["total"]
    yield CounterMetricFamily(
        "egress_denied_attempts", "Denied egress attempts reported by the enforcement points.", value=denied or 0
    )


def policy_update_histogram() -> HistogramMetricFamily:
    """Approval to the pushed commit that first carried it (stage=pushed), and to the first
    decision an engine reported with that bundle or a later one (stage=engine): each approval
    observed once, when it happened, into stored counters (two values: bounded cardinality)."""
    family = HistogramMetricFamily(
        "egress_policy_update_seconds",
        "Time from approval to the pushed commit carrying it (stage=pushed) and to an engine's first "
        "decision with that bundle or a later one (stage=engine).",
        labels=["stage"],
    )
    for stage, (buckets, total) in policy_update_buckets().items():
        family.add_metric([stage], buckets=buckets, sum_value=total)
    return family


def outbox_counters() -> CounterMetricFamily:
    """Deliveries by kind and outcome since the portal began (kinds are the handlers' names: a
    handful, never hosts or identities)."""
    family = CounterMetricFamily(
        "egress_outbox_deliveries",
        "Outbox delivery attempts by kind and outcome (delivered; failed and retried later; failed and parked).",
        labels=["kind", "outcome"],
    )
    counts = {
        (kind, outcome): count for kind, outcome, count in OutboxTally.objects.values_list("kind", "outcome", "count")
    }
    kinds = sorted({*settings.OUTBOX_HANDLERS, *(kind for kind, _ in counts)})
    for kind in kinds:
        for outcome in OutboxOutcome.values:
            family.add_metric([kind, outcome], counts.get((kind, outcome), 0))
    return family


class PortalCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        now = timezone.now()
        grants = GaugeMetricFamily("egress_grants", "Grants by status.", labels=["status"])
        counts = dict(Grant.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in GrantStatus.values:
            grants.add_metric([status], counts.get(status, 0))
        yield grants

        requests = GaugeMetricFamily("egress_requests", "Exception requests by status.", labels=["status"])
        counts = dict(ExceptionRequest.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in RequestStatus.values:
            requests.add_metric([status], counts.get(status, 0))
        yield requests

        oldest = ExceptionRequest.objects.filter(status=RequestStatus.PENDING).aggregate(at=Min("created_at"))["at"]
        yield GaugeMetricFamily(
            "egress_pending_oldest_age_seconds",
            "Age of the oldest request waiting for a decision (0 when none).",
            value=(now - oldest).total_seconds() if oldest else 0,
        )
        overdue = Grant.objects.filter(status=GrantStatus.ACTIVE, expires_at__lte=now).count()
        yield GaugeMetricFamily(
            "egress_grants_past_expiry", "Active grants past their expiry (the expire job is late).", value=overdue
        )

        publications = CounterMetricFamily("egress_bundle_publications", "Bundle publish attempts.", labels=["status"])
        counts = dict(
            BundlePublication.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        for status in BundlePublication.Status.values:
            publications.add_metric([status], counts.get(status, 0))
        yield publications
        last = BundlePublication.objects.exclude(status=BundlePublication.Status.FAILED).first()
        yield GaugeMetricFamily(
            "egress_bundle_last_success_timestamp_seconds",
            "When the bundle was last published or confirmed unchanged.",
            value=last.created_at.timestamp() if last else 0,
        )
        yield GaugeMetricFamily(
            "egress_bundle_last_success_age_seconds",
            "Seconds since the bundle was last published or confirmed unchanged (NaN before the first).",
            value=(now - last.created_at).total_seconds() if last else math.nan,
        )
        yield time_to_approve_histogram()
        yield from ingestion_counters()
        yield policy_update_histogram()

        outbox = GaugeMetricFamily(
            "egress_outbox_messages", "Outbox rows by status (parked: given up on).", labels=["status"]
        )
        counts = dict(OutboxMessage.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in OutboxStatus.values:
            outbox.add_metric([status], counts.get(status, 0))
        yield outbox
        yield outbox_counters()
        breakglass = metric_counts(now=now)
        yield GaugeMetricFamily("egress_breakglass_active", "Break-glass uses still open.", value=breakglass["active"])
        yield GaugeMetricFamily(
            "egress_breakglass_unreviewed", "Break-glass uses awaiting review.", value=breakglass["unreviewed"]
        )
        yield GaugeMetricFamily(
            "egress_breakglass_review_overdue",
            "Break-glass uses past their review due time.",
            value=breakglass["overdue"],
        )
        head = AuditChainHead.objects.filter(pk=1).first()
        yield CounterMetricFamily("egress_audit_events", "Audit events written.", value=head.last_seq if head else 0)


def metrics(request: HttpRequest) -> HttpResponse:
    """``/metrics`` for Prometheus; with METRICS_TOKEN set, a bearer token is required."""
    if settings.METRICS_TOKEN and not has_bearer_token(request, settings.METRICS_TOKEN):
        return HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(PortalCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
