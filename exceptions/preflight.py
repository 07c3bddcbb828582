"""Preflight: for one workload and the destinations it intends to reach, which are
allowed now, which wait in a request, and which need one.

The verdict per destination is the decision contract's (``bundle.decision.decide``
over the open-grant records the bundle is compiled from), so preflight, explain and
the engines agree. A caller who may not see the workload is told the same as for a
workload that does not exist. Reads only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from bundle.decision import build_index, candidate_keys, decide
from bundle.records import GrantRecord, to_ns
from exceptions.access import roles_for, visible_workloads
from exceptions.choices import DataClass, Purpose, RequestStatus
from exceptions.models import ExceptionRequest, Workload
from exceptions.selectors import bundle_records
from exceptions.services.submissions import lifetime_caps
from exceptions.state import OPEN_REQUEST_STATUSES
from exceptions.validators import validate_destination_host, validate_identity, validate_port, validate_protocol

ALLOWED = "allowed"
PENDING = "pending"
NEEDS_REQUEST = "needs_request"
INVALID = "invalid"
STATUSES = (ALLOWED, PENDING, NEEDS_REQUEST, INVALID)

UNKNOWN_WORKLOAD = "No workload you may see has this {what}; check it, or ask its team to add you."
# The fields of a request body only a person can answer; preflight leaves them as placeholders.
PLACEHOLDER_FIELDS = ("purpose", "data_class", "justification", "lifetime_hours")


@dataclass
class PreflightRow:
    host: str
    port: object
    protocol: str
    status: str
    reason: str
    until: str | None = None
    grant_id: int | None = None
    matched_rule: str | None = None
    request: dict[str, Any] | None = None
    request_body: dict[str, Any] | None = None
    new_request_url: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Preflight:
    workload: dict[str, Any]
    checked_at: str
    can_file: bool
    results: list[PreflightRow]
    request_template: dict[str, Any] | None
    placeholders: dict[str, str]

    @property
    def summary(self) -> dict[str, int]:
        return {status: sum(row.status == status for row in self.results) for status in STATUSES}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary
        return data


def preflight_workload(user: Any, *, workload_id: int | None = None, identity: str | None = None) -> Workload:
    """The workload named by id or identity, if ``user`` may see it; otherwise the
    same error whether it does not exist or belongs to a team they cannot see."""
    workloads = visible_workloads(user)
    if workload_id is not None:
        found = workloads.filter(pk=workload_id).first()
        if found is None:
            raise ValidationError({"workload": [UNKNOWN_WORKLOAD.format(what="id")]})
        return found
    if not identity:
        raise ValidationError({"workload": ["Name the workload: its id ('workload') or its identity ('identity')."]})
    try:
        canonical = validate_identity(identity, trust_domain=settings.EGRESS_TRUST_DOMAIN).canonical
    except ValidationError as exc:
        raise ValidationError({"identity": exc.messages}) from exc
    found = workloads.filter(identity=canonical).first()
    if found is None:
        raise ValidationError({"identity": [UNKNOWN_WORKLOAD.format(what="identity")]})
    return found


def placeholders() -> dict[str, str]:
    caps = lifetime_caps()
    minimum = settings.EGRESS_JUSTIFICATION_MIN_LENGTH

    def hours(delta: Any) -> int:
        return int(delta.total_seconds() // 3600)

    return {
        "purpose": f"<fill in: one of {', '.join(Purpose.values)}>",
        "data_class": f"<fill in: one of {', '.join(DataClass.values)}>",
        "justification": (
            f"<fill in: at least {minimum} characters: what the workload does there and what breaks without it>"
        ),
        "lifetime_hours": (
            f"<fill in: whole hours; at most {hours(caps.low)} for low risk, {hours(caps.medium)} for medium, "
            f"{hours(caps.high)} for high, {hours(caps.diagnostics)} for diagnostics>"
        ),
    }


def _request_body(workload: Workload, destinations: list[dict[str, Any]], fill: dict[str, str]) -> dict[str, Any]:
    """A body for POST /api/v1/requests/ with the person's answers left as placeholders."""
    return {
        "workload": workload.pk,
        "destinations": [{**d, "tls_required": True} for d in destinations],
        **fill,
        "ticket_ref": "",
    }


def _clean_row(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The canonical destination, or the validators' reasons (the same ones filing would give)."""
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, validator in (
        ("host", validate_destination_host),
        ("port", validate_port),
        ("protocol", validate_protocol),
    ):
        try:
            values[name] = validator(raw.get(name, "tcp" if name == "protocol" else None))
        except ValidationError as exc:
            errors += [{"field": name, "code": exc.code or "invalid", "message": m} for m in exc.messages]
    return values, errors


def _probe(host: str) -> str:
    """The name to ask the decision about. The contract decides concrete names; for a
    wildcard row ask about a name no exact grant can hold ('_' is not a valid label), so
    only a grant for that same wildcard can allow it."""
    return "_." + host[2:] if host.startswith("*.") else host


def _covers(host: str, port: int, protocol: str, destination: Any) -> bool:
    return destination.host in candidate_keys(host) and (destination.port, destination.protocol) == (port, protocol)


def _request_link(base_url: str, request_id: int, status: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "status": status,
        "url": base_url + reverse("request-detail", args=[request_id]),
        "api_url": base_url + reverse("api-request-detail", args=[request_id]),
    }


def _scheduled(records: Sequence[GrantRecord], host: str, port: int, protocol: str, now_ns: int) -> GrantRecord | None:
    """An approved grant for this destination that has not started yet (the soonest)."""
    later = [r for r in records if _covers(host, port, protocol, r) and r.valid_from_ns > now_ns]
    return min(later, key=lambda r: (r.valid_from_ns, r.id), default=None)


def preflight(
    *,
    user: Any,
    workload: Workload,
    destinations: Sequence[Mapping[str, Any]],
    base_url: str,
    now: datetime | None = None,
) -> Preflight:
    """Answer each destination for ``workload`` (which ``user`` may see: preflight_workload)."""
    now = now or timezone.now()
    now_ns = to_ns(now)
    records = bundle_records(identity=workload.identity)
    index = build_index(records)
    open_requests = sorted(
        ExceptionRequest.objects.filter(workload=workload, status__in=OPEN_REQUEST_STATUSES).prefetch_related(
            "destinations"
        ),
        # A submitted request is the better answer than a draft; then the oldest.
        key=lambda r: (r.status != RequestStatus.PENDING, r.created_at, r.pk),
    )
    request_status = dict(
        ExceptionRequest.objects.filter(pk__in={r.request_id for r in records}).values_list("id", "status")
    )
    fill = placeholders()
    rows: list[PreflightRow] = []
    missing: list[dict[str, Any]] = []
    for raw in destinations:
        values, errors = _clean_row(raw)
        row = PreflightRow(
            host=values.get("host", str(raw.get("host", ""))),
            port=values.get("port", raw.get("port")),
            protocol=values.get("protocol", str(raw.get("protocol", "tcp"))),
            status=INVALID,
            reason="",
        )
        rows.append(row)
        if errors:
            row.reason = "; ".join(e["message"] for e in errors)
            row.errors = errors
            continue
        host, port, protocol = values["host"], values["port"], values["protocol"]
        probe = _probe(host)
        decision = decide(index, identity=workload.identity, host=probe, port=port, protocol=protocol, now_ns=now_ns)
        if decision.allow and decision.grant_id is not None:
            grant = next(r for r in records if r.id == decision.grant_id)
            row.status, row.reason, row.until, row.grant_id = ALLOWED, decision.reason, decision.expires_at, grant.id
            row.matched_rule = (
                f"wildcard {grant.host} (exactly one extra label)" if grant.host.startswith("*.") else "exact host"
            )
            row.request = _request_link(base_url, grant.request_id, request_status[grant.request_id])
            continue
        later = _scheduled(records, probe, port, protocol, now_ns)
        if later is not None:
            row.status, row.grant_id = PENDING, later.id
            row.request = _request_link(base_url, later.request_id, request_status[later.request_id])
            starts_at = row.request["starts_at"] = later.valid_from.isoformat()
            row.reason = f"approved in request {later.request_id}; grant {later.id} starts at {starts_at}"
            continue
        waiting = next(
            (r for r in open_requests if any(_covers(probe, port, protocol, d) for d in r.destinations.all())), None
        )
        if waiting is not None:
            row.status = PENDING
            row.reason = f"asked for in request {waiting.pk}, which is {waiting.status}"
            row.request = _request_link(base_url, waiting.pk, waiting.status)
            continue
        destination = {"host": host, "port": port, "protocol": protocol}
        row.status, row.reason = NEEDS_REQUEST, decision.reason.replace(probe, host)
        row.request_body = _request_body(workload, [destination], fill)
        query = urlencode({"workload": workload.pk, "host": host, "port": port})
        row.new_request_url = f"{base_url}{reverse('request-create')}?{query}"
        if destination not in missing:
            missing.append(destination)
    return Preflight(
        workload={
            "id": workload.pk,
            "name": workload.name,
            "team": workload.team.slug,
            "identity": workload.identity,
            "environment": workload.environment,
        },
        checked_at=now.isoformat(),
        can_file=workload.team_id in roles_for(user).member_team_ids,
        results=rows,
        request_template=_request_body(workload, missing, fill) if missing else None,
        placeholders=fill,
    )
