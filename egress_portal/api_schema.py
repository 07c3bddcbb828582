"""The OpenAPI document says what the API really answers: every error as a problem
document, the pagination envelope, and the headers integrations rely on.

``ProblemAutoSchema`` is drf-spectacular's AutoSchema plus, on every operation,
the error responses it can give (400 only where there is input to refuse, 404
where the path names an object, 409/412 on actions, 415 where there is a body,
and 401/403/429 everywhere), each ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from foundation.problems import PROBLEM_CONTENT_TYPE


class FieldErrorSerializer(serializers.Serializer[dict[str, Any]]):
    field = serializers.CharField(
        allow_null=True, help_text="Path of the field in the input (destinations[0].host); null for the whole body."
    )
    message = serializers.CharField()
    code = serializers.CharField()


# A dict of fields, not a class body: a field called 'errors' would shadow Serializer.errors.
ProblemSerializer = inline_serializer(
    "Problem",
    {
        "type": serializers.CharField(help_text="urn:egress-portal:problem:<code>"),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "code": serializers.CharField(help_text="Stable, machine-readable name of the problem."),
        "detail": serializers.CharField(),
        "errors": FieldErrorSerializer(
            many=True, required=False, help_text="Validation problems only: every field error."
        ),
    },
)


ERRORS = {
    "400": "Invalid input: every field error at once, named by its path (validation_error, parse_error).",
    "401": "No or an unknown, expired or revoked credential (not_authenticated, authentication_failed).",
    "403": "Not allowed: a missing token scope, a role, or separation of duties (permission_denied).",
    "404": "No such object, or one the caller may not see (not_found).",
    "409": "The object's state forbids this, or the Idempotency-Key was used with another body "
    "(illegal_transition, idempotency_conflict, idempotency_busy).",
    "412": "If-Match names a version that is no longer current (precondition_failed).",
    "415": "The body is not JSON, form or multipart (unsupported_media_type).",
    "429": "Over the rate limit; Retry-After says when to try again (throttled).",
}
EXAMPLE = {
    "type": "urn:egress-portal:problem:validation_error",
    "title": "Bad Request",
    "status": 400,
    "code": "validation_error",
    "detail": "2 error(s) in the input: destinations[0].port, lifetime_hours. Each is listed in 'errors'.",
    "errors": [
        {"field": "destinations[0].port", "message": "Enter a port from 1 to 65535.", "code": "invalid"},
        {"field": "lifetime_hours", "message": "This field is required.", "code": "required"},
    ],
}


class ProblemAutoSchema(AutoSchema):
    def _map_serializer(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        from exceptions.api.serializers import ClosedSerializer

        if isinstance(serializer, ClosedSerializer):
            # The endpoint refuses unknown fields; the document says so, so a schema-valid body is accepted.
            schema["additionalProperties"] = False
        return schema

    def _has_etag(self) -> bool:
        return bool(getattr(self.view, "etag_kind", "")) and "{" in self.path

    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super()._get_parameters()
        headers: list[dict[str, Any]] = []
        if self.method == "POST":
            headers.append(
                {
                    "in": "header",
                    "name": "Idempotency-Key",
                    "required": False,
                    "description": "Replays the stored answer to a retry with the same key and body (24 h, per "
                    "token); the same key with another body is a 409.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
                }
            )
            if self._has_etag():
                headers.append(
                    {
                        "in": "header",
                        "name": "If-Match",
                        "required": False,
                        "description": "Act only if the object's ETag is still this one (else 412).",
                        "schema": {"type": "string"},
                    }
                )
        if self.method == "GET" and self._has_etag():
            headers.append(
                {
                    "in": "header",
                    "name": "If-None-Match",
                    "required": False,
                    "description": "The ETag of the copy you have: 304 when it is still current.",
                    "schema": {"type": "string"},
                }
            )
        return parameters + headers

    def _error_codes(self) -> list[str]:
        codes = ["401", "403", "429"]
        has_body = self.method in {"POST", "PUT", "PATCH"}
        has_query = bool([p for p in self._get_parameters() if p.get("in") == "query"])
        if has_body or has_query:
            codes.append("400")
        if "{" in self.path:
            codes.append("404")
        codes += list(getattr(self.view, "problem_statuses", ()))
        if has_body:
            codes += ["409", "415"]
            if getattr(self.view, "etag_kind", "") and "{" in self.path:
                codes.append("412")
        return sorted(set(codes))

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        component = self.resolve_serializer(ProblemSerializer, "response")
        for code in self._error_codes():
            response = responses.setdefault(code, {"description": ERRORS[code]})
            # A view's own description of the error stays; the body is always a problem document.
            response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": component.ref}}
        rate_headers = {
            name: {"schema": {"type": "integer"}, "description": description}
            for name, description in (
                ("RateLimit-Limit", "Calls allowed in the window of the budget closest to running out."),
                ("RateLimit-Remaining", "Calls left in that window."),
                ("RateLimit-Reset", "Seconds until that window ends."),
            )
        }
        for code, response in responses.items():
            if code.startswith("2"):
                response["headers"] = dict(rate_headers)
                if code == "201":
                    response["headers"]["Location"] = {
                        "schema": {"type": "string"},
                        "description": "Where the created object is read.",
                    }
                if self.method == "GET" and self._has_etag():
                    response["headers"]["ETag"] = {
                        "schema": {"type": "string"},
                        "description": "Version of this representation (If-None-Match, If-Match).",
                    }
        if self.method == "GET" and self._has_etag():
            responses["304"] = {"description": "Not modified: the If-None-Match ETag is still current."}
        if "400" in responses and PROBLEM_CONTENT_TYPE in responses["400"].get("content", {}):
            responses["400"]["content"][PROBLEM_CONTENT_TYPE]["examples"] = {
                "ValidationError": {"value": EXAMPLE, "summary": "Every field error at once"}
            }
        return responses
