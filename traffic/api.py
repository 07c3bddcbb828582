"""Ingestion endpoints the gateways post to, authenticated by the gateway's token.

``POST /api/v1/ingest/opa/logs`` takes OPA's decision-log upload unchanged (a
gzip-compressed JSON array, ``Authorization: Bearer <gateway token>``), so an
OPA service URL of ``…/api/v1/ingest/opa`` with the default resource ``logs``
works. ``POST /api/v1/ingest/flows`` takes flow records as a JSON array or JSON
lines, gzip-compressed or not.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from foundation.ratelimit import consume, rate_limit_headers
from traffic.models import EgressGateway
from traffic.services.gateways import find_gateway
from traffic.services.ingest import IngestResult, UnparsableLine, ingest_decisions, ingest_flows

MAX_LISTED_REJECTIONS = 1000


class BodyError(ValueError):
    pass


def _error(status: int, detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="egress-portal-ingest"'
    return response


def _gateway(request: HttpRequest) -> EgressGateway | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return find_gateway(token.strip())


def _over_budget(gateway: EgressGateway) -> JsonResponse | None:
    """Each gateway token's own budget of posts per minute; over it, 429 with Retry-After."""
    per_minute: int = settings.EGRESS_INGEST_RATE_PER_MINUTE
    if per_minute <= 0:
        return None
    budget = consume("ingest", str(gateway.pk), f"{per_minute}/min")
    if budget.used <= budget.limit:
        return None
    response = _error(
        429,
        f"Gateway '{gateway.name}' posted more than {per_minute} batches this minute; retry after {budget.reset} s.",
    )
    response["Retry-After"] = str(budget.reset)
    for name, value in rate_limit_headers(budget).items():
        response[name] = value
    return response


def _body(request: HttpRequest) -> bytes:
    """The request body, gunzipped when it is gzip, refusing anything over the size limit."""
    limit: int = settings.EGRESS_INGEST_MAX_BYTES
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(f"the body is larger than {limit} bytes; send smaller batches")
    if request.headers.get("Content-Encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        try:
            data = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise BodyError(f"the body is not valid gzip: {exc}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise BodyError(f"the body inflates to more than {limit} bytes; send smaller batches")
        return data
    return raw


def _respond(result: IngestResult) -> JsonResponse:
    payload = result.as_dict()
    payload["rejected_count"] = len(result.rejected)
    payload["rejected"] = result.rejected[:MAX_LISTED_REJECTIONS]
    return JsonResponse(payload, status=200)


def _ingest_view(
    request: HttpRequest,
    parse: Callable[[bytes], list[Any]],
    ingest: Callable[[EgressGateway, list[Any]], IngestResult],
) -> JsonResponse:
    gateway = _gateway(request)
    if gateway is None:
        return _error(401, "Send the gateway's ingestion token as 'Authorization: Bearer egw_…'.")
    refused = _over_budget(gateway)
    if refused is not None:
        return refused
    try:
        records = parse(_body(request))
    except BodyError as exc:
        return _error(400, str(exc))
    return _respond(ingest(gateway, records))


def parse_opa(body: bytes) -> list[Any]:
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses numbers a double cannot hold (1e400); the standard parser takes them,
        # so such a record is refused on its own rather than losing the batch.
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            raise BodyError(f"the body is not JSON: {exc}") from None
    if not isinstance(events, list):
        raise BodyError("the body must be a JSON array of decision events, as OPA's decision-log plugin sends")
    return events


def _parse_flows(body: bytes) -> list[Any]:
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("["):
        return parse_opa(body)
    records: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            records.append(UnparsableLine(number, str(exc)))
    return records


@csrf_exempt
@require_POST
def opa_logs(request: HttpRequest) -> JsonResponse:
    def ingest(gateway: EgressGateway, events: list[Any]) -> IngestResult:
        return ingest_decisions(gateway=gateway, events=events)

    return _ingest_view(request, parse_opa, ingest)


@csrf_exempt
@require_POST
def flows(request: HttpRequest) -> JsonResponse:
    def ingest(gateway: EgressGateway, records: list[Any]) -> IngestResult:
        return ingest_flows(gateway=gateway, records=records)

    return _ingest_view(request, _parse_flows, ingest)
