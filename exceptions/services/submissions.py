"""Checking what a requester submits: destination rows, lifetime caps, the risk tier.

Pure reads shared by the request service, the HTML form's live preview and the API;
nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from bundle.provider_ranges import is_service_destination
from exceptions.models import Workload
from exceptions.risk import LifetimeCaps, RiskAssessment, assess_risk, format_duration
from exceptions.selectors import latest_provider_ranges
from exceptions.validators import (
    HOST_REQUIRED,
    PORT_REQUIRED,
    PROTOCOL_REQUIRED,
    choice_error,
    is_wildcard,
    validate_destination_host,
    validate_port,
    validate_protocol,
)

# The one answer for a workload id the user may not file for, whether it exists
# or not: naming the team or workload would tell an outsider that it does.
UNKNOWN_WORKLOAD = "No workload with this id that you may file requests for; choose one of your team's workloads."


NO_DESTINATIONS = "Add at least one destination (host, port, protocol)."


@dataclass(frozen=True)
class DestinationInput:
    host: str
    port: int
    protocol: str = "tcp"
    tls_required: bool = True


def lifetime_caps() -> LifetimeCaps:
    return LifetimeCaps(
        low=timedelta(days=settings.EGRESS_LIFETIME_CAP_LOW_DAYS),
        medium=timedelta(days=settings.EGRESS_LIFETIME_CAP_MEDIUM_DAYS),
        high=timedelta(days=settings.EGRESS_LIFETIME_CAP_HIGH_DAYS),
        diagnostics=timedelta(hours=settings.EGRESS_LIFETIME_CAP_DIAGNOSTICS_HOURS),
    )


def assess_request_risk(
    *, environment: str, hosts: Iterable[str], purpose: str, data_class: str, lifetime: timedelta | None
) -> RiskAssessment:
    return assess_risk(
        environment=environment,
        data_class=data_class,
        # A provider service is a whole range of addresses shared with every other customer: at least a wildcard.
        wildcard=any(is_wildcard(h) or is_service_destination(h) for h in hosts),
        purpose=purpose,
        lifetime=lifetime,
        caps=lifetime_caps(),
    )


SHOWN_SERVICES = 30


def validate_provider_service(value: str) -> str:
    """A provider service ("aws:S3/eu-west-1") known to the newest range file of its provider."""
    service = value.strip()
    provider, _, key = service.partition(":")
    ranges = latest_provider_ranges()
    if provider not in ranges:
        loaded = ", ".join(sorted(ranges)) or "none yet"
        raise ValidationError(
            f"'{service}' does not start with a provider whose ranges are loaded (loaded: {loaded}). "
            "Write provider:SERVICE/region, for example aws:S3/eu-west-1.",
            code="unknown_provider",
        )
    known = sorted(ranges[provider].services)
    if key not in known:
        shown = ", ".join(f"{provider}:{k}" for k in known[:SHOWN_SERVICES])
        more = f" and {len(known) - SHOWN_SERVICES} more" if len(known) > SHOWN_SERVICES else ""
        raise ValidationError(
            f"'{service}' is not a service in {provider}'s ranges ({ranges[provider].sync_token}). "
            f"Known services: {shown}{more}.",
            code="unknown_service",
        )
    return f"{provider}:{key}"


def _destination_target(data: Mapping[str, Any]) -> tuple[str, Any, Any]:
    """Which field names the destination (host or service), its value and its validator."""
    host, service = data.get("host") or "", data.get("service") or ""
    if service or (isinstance(host, str) and is_service_destination(host.strip())):
        return "service", service or host, validate_provider_service
    return "host", host, validate_destination_host


def clean_destinations(raw: Sequence[Mapping[str, Any] | DestinationInput]) -> list[DestinationInput]:
    """Validate destination rows; errors are keyed ``destinations[i].field``."""
    errors: dict[str, list[str]] = {}
    cleaned: list[DestinationInput] = []
    seen: dict[tuple[str, int, str], int] = {}
    if not raw:
        raise ValidationError({"destinations": [NO_DESTINATIONS]})
    limit = settings.EGRESS_MAX_DESTINATIONS
    if len(raw) > limit:
        raise ValidationError(
            {
                "destinations": [
                    f"A request may name at most {limit} destinations ({len(raw)} given); "
                    "split the rest into another request or use one *.domain wildcard."
                ]
            }
        )
    for index, row in enumerate(raw):
        data = row.__dict__ if isinstance(row, DestinationInput) else row
        prefix = f"destinations[{index}]"
        values: dict[str, Any] = {}
        target, target_value, target_validator = _destination_target(data)
        if target == "service" and data.get("host") and data.get("service"):
            errors.setdefault(f"{prefix}.service", []).append(
                "Give either a host or a provider service in one destination, not both."
            )
            continue
        for field, value, validator, required in (
            (target, target_value, target_validator, HOST_REQUIRED),
            ("port", data.get("port"), validate_port, PORT_REQUIRED),
            ("protocol", data.get("protocol", "tcp"), validate_protocol, PROTOCOL_REQUIRED),
        ):
            if value is None or value == "":
                errors.setdefault(f"{prefix}.{field}", []).append(required)
                continue
            try:
                # A provider service is stored where a host goes: approvals, pages and the bundle read it there.
                values["host" if field == "service" else field] = validator(value)
            except ValidationError as exc:
                # The key names the row; the page shows the message inside it.
                errors.setdefault(f"{prefix}.{field}", []).extend(exc.messages)
        if len(values) == 3:
            key = (values["host"], values["port"], values["protocol"])
            if key in seen:
                errors.setdefault(f"{prefix}.host", []).append(
                    f"Destination {index + 1} repeats destination {seen[key] + 1} "
                    f"({key[0]}:{key[1]}/{key[2]}); remove one."
                )
                continue
            seen[key] = index
            cleaned.append(DestinationInput(tls_required=bool(data.get("tls_required", True)), **values))
    if errors:
        raise ValidationError(errors)
    return cleaned


def collect_destination_errors(
    errors: dict[str, list[str]], raw: Sequence[Mapping[str, Any] | DestinationInput]
) -> list[DestinationInput]:
    """``clean_destinations`` for a caller gathering every field's errors before it raises."""
    try:
        return clean_destinations(raw)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
        return []


def lifetime_error(risk: RiskAssessment, lifetime: timedelta | None) -> str | None:
    """Why ``lifetime`` is too long for the assessed tier, or None when it fits."""
    if lifetime is None or risk.within_cap:
        return None
    tier_reasons = "; ".join(r for r in risk.reasons if "exceeds" not in r)
    cap = format_duration(risk.lifetime_cap)
    return (
        f"{format_duration(lifetime)} exceeds the {cap} cap for {risk.tier}-risk requests ({tier_reasons}). "
        f"Ask for {cap} or less and renew later."
    )


@dataclass(frozen=True)
class SubmissionPreview:
    hosts: list[str]
    errors: dict[str, list[str]]
    risk: RiskAssessment | None


def preview_submission(
    *,
    workload: Workload | None,
    destinations: Sequence[Mapping[str, Any]],
    purpose: str,
    data_class: str,
    lifetime: timedelta | None,
) -> SubmissionPreview:
    """What submit_request would say about these destinations and this lifetime; writes nothing."""
    errors: dict[str, list[str]] = {}
    hosts: list[str] = []
    if destinations:
        try:
            hosts = [d.host for d in clean_destinations(destinations)]
        except ValidationError as exc:
            errors = dict(exc.message_dict)
    risk = None
    # No tier until the destinations are valid: a tier for a host that will be
    # refused would be a guess.
    if workload is not None and hosts and not errors:
        risk = assess_request_risk(
            environment=workload.environment,
            hosts=hosts,
            purpose=purpose,
            data_class=data_class,
            lifetime=lifetime,
        )
        cap_error = lifetime_error(risk, lifetime)
        if cap_error:
            errors["lifetime"] = [cap_error]
    return SubmissionPreview(hosts, errors, risk)


def check_text_limits(errors: dict[str, list[str]], *, justification: str, ticket_ref: str) -> None:
    """The length limits on a request's free text (the HTML form and the API share these words)."""
    for field, value, limit, what in (
        ("justification", justification, settings.EGRESS_JUSTIFICATION_MAX_LENGTH, "justification"),
        ("ticket_ref", ticket_ref, settings.EGRESS_TICKET_REF_MAX_LENGTH, "ticket reference"),
    ):
        if len(value) > limit:
            errors.setdefault(field, []).append(
                f"The {what} may be at most {limit:,} characters ({len(value):,} given); shorten it "
                "or link to a document."
            )


def check_choice(errors: dict[str, list[str]], field: str, value: str, choices: Any) -> None:
    if value not in choices.values:
        errors.setdefault(field, []).append(choice_error(field.replace("_", " "), choices.values, value))
