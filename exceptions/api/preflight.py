"""POST /api/v1/preflight/: which of a workload's intended destinations are allowed,
pending or still need a request. Thin: shape checks here, the answer in exceptions.preflight."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from exceptions.api.base import IntegrationView
from exceptions.api.serializers import BoundedIntegerField, ClosedSerializer
from exceptions.choices import Protocol
from exceptions.preflight import STATUSES, preflight, preflight_workload
from exceptions.validators import OBJECT_ID, PORT


class PreflightDestinationInput(ClosedSerializer):
    host = serializers.CharField(max_length=300, help_text="DNS name (exact, or one leading '*.' label).")
    port = BoundedIntegerField(bounds=PORT)
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.TCP)


class _DestinationList(serializers.ListField):
    def to_internal_value(self, data: Any) -> list[Any]:
        # Counted before any row is validated: an oversized body costs nothing more.
        limit = settings.EGRESS_PREFLIGHT_MAX_DESTINATIONS
        if isinstance(data, list) and len(data) > limit:
            raise ValidationError(f"{len(data)} destinations given; check at most {limit} per call.")
        return super().to_internal_value(data)


class PreflightInput(ClosedSerializer):
    workload = BoundedIntegerField(bounds=OBJECT_ID, required=False, help_text="Workload id; or give 'identity'.")
    identity = serializers.CharField(
        required=False,
        max_length=300,
        help_text="Workload identity: SPIFFE ID, namespace/serviceaccount, AWS role ARN or GCP SA e-mail.",
    )
    destinations = _DestinationList(
        child=PreflightDestinationInput(),
        allow_empty=False,
        help_text="Intended destinations; at most EGRESS_PREFLIGHT_MAX_DESTINATIONS (100 by default).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("workload" in attrs) == ("identity" in attrs):
            raise ValidationError({"workload": ["Give exactly one of 'workload' (id) and 'identity'."]})
        return attrs


PreflightRowOutput = inline_serializer(
    "PreflightRow",
    {
        "host": serializers.CharField(),
        "port": serializers.JSONField(help_text="The port, as given when it was invalid."),
        "protocol": serializers.CharField(),
        "status": serializers.ChoiceField(choices=STATUSES),
        "reason": serializers.CharField(),
        "until": serializers.CharField(allow_null=True, help_text="allowed: when the grant expires (RFC 3339)."),
        "grant_id": serializers.IntegerField(allow_null=True),
        "matched_rule": serializers.CharField(allow_null=True),
        "request": serializers.DictField(
            allow_null=True,
            help_text="allowed or pending: the request (id, status, url, api_url; starts_at for a later grant).",
        ),
        "request_body": serializers.DictField(
            allow_null=True, help_text="needs_request: a body for POST /api/v1/requests/ with placeholders to fill."
        ),
        "new_request_url": serializers.CharField(
            allow_null=True, help_text="needs_request: the pre-filled request form."
        ),
        # A dict of fields, not a Serializer class: a field called 'errors' would shadow Serializer.errors.
        "errors": serializers.ListField(
            child=serializers.DictField(child=serializers.CharField()),
            help_text="invalid: [{field, code, message}] from the destination validators.",
        ),
    },
    many=True,
)


class PreflightOutput(serializers.Serializer[dict[str, Any]]):
    workload = serializers.DictField(help_text="id, name, team, identity, environment")
    checked_at = serializers.DateTimeField()
    can_file = serializers.BooleanField(help_text="Whether the caller may file requests for this workload.")
    summary = serializers.DictField(child=serializers.IntegerField(), help_text="Rows per status.")
    results = PreflightRowOutput
    request_template = serializers.DictField(
        allow_null=True, help_text="One request body covering every needs_request destination, or null."
    )
    placeholders = serializers.DictField(
        child=serializers.CharField(), help_text="The fields a person must fill in the request bodies, and how."
    )


_EXAMPLE_RESPONSE = {
    "workload": {
        "id": 3,
        "name": "checkout-api",
        "team": "payments",
        "identity": "spiffe://cluster.local/ns/payments/sa/checkout-api",
        "environment": "staging",
    },
    "checked_at": "2026-11-28T12:00:00+00:00",
    "can_file": True,
    "summary": {"allowed": 1, "pending": 0, "needs_request": 1, "invalid": 1},
    "results": [
        {
            "host": "api.partner.example",
            "port": 443,
            "protocol": "tcp",
            "status": "allowed",
            "reason": "grant 7 allows spiffe://cluster.local/ns/payments/sa/checkout-api to reach "
            "api.partner.example:443/tcp until 2026-12-05T12:00:00Z",
            "until": "2026-12-05T12:00:00Z",
            "grant_id": 7,
            "matched_rule": "exact host",
            "request": {"id": 12, "status": "active", "url": "https://portal/requests/12/"},
            "request_body": None,
            "new_request_url": None,
            "errors": [],
        },
        {
            "host": "files.partner.example",
            "port": 22,
            "protocol": "tcp",
            "status": "needs_request",
            "reason": "no grant for spiffe://cluster.local/ns/payments/sa/checkout-api to reach files.partner.example",
            "until": None,
            "grant_id": None,
            "matched_rule": None,
            "request": None,
            "request_body": {
                "workload": 3,
                "destinations": [
                    {"host": "files.partner.example", "port": 22, "protocol": "tcp", "tls_required": True}
                ],
                "purpose": "<fill in: one of dependency_fetch, partner_api, telemetry, diagnostics, other>",
                "data_class": "<fill in: one of public, internal, confidential, restricted>",
                "justification": "<fill in: at least 30 characters: ...>",
                "lifetime_hours": "<fill in: whole hours; ...>",
                "ticket_ref": "",
            },
            "new_request_url": "https://portal/requests/new/?workload=3&host=files.partner.example&port=22",
            "errors": [],
        },
        {
            "host": "10.0.0.8",
            "port": 443,
            "protocol": "tcp",
            "status": "invalid",
            "reason": "'10.0.0.8' is an IP address literal. ...",
            "until": None,
            "grant_id": None,
            "matched_rule": None,
            "request": None,
            "request_body": None,
            "new_request_url": None,
            "errors": [{"field": "host", "code": "ip_literal", "message": "'10.0.0.8' is an IP address literal. ..."}],
        },
    ],
    "request_template": None,
    "placeholders": {"purpose": "<fill in: ...>"},
}


class Preflight(IntegrationView):
    """Check a workload's intended destinations before deploying it."""

    # A read of decisions, like explain: a CI token needs 'explain' (and 'requests:write' to file).
    required_scopes = {"POST": "explain"}

    @extend_schema(
        request=PreflightInput,
        responses={
            200: PreflightOutput,
            400: OpenApiResponse(description="Malformed input or an unknown workload; errors name the field."),
        },
        examples=[
            OpenApiExample(
                "By identity",
                request_only=True,
                value={
                    "identity": "payments/checkout-api",
                    "destinations": [
                        {"host": "api.partner.example", "port": 443},
                        {"host": "files.partner.example", "port": 22, "protocol": "tcp"},
                        {"host": "10.0.0.8", "port": 443},
                    ],
                },
            ),
            OpenApiExample("Answer", response_only=True, status_codes=["200"], value=_EXAMPLE_RESPONSE),
        ],
    )
    def post(self, request: Request) -> Response:
        payload = PreflightInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        workload = preflight_workload(request.user, workload_id=data.get("workload"), identity=data.get("identity"))
        answer = preflight(
            user=request.user,
            workload=workload,
            destinations=data["destinations"],
            base_url=request.build_absolute_uri("/").rstrip("/"),
        )
        return Response(answer.as_dict())
