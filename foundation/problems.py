"""One error shape for the whole API: RFC 9457 problem details (``application/problem+json``).

drf-standardized-errors catches every exception a DRF view raises (its handler
also turns unexpected ones into a 500 without leaking the message); the two
classes here only decide which domain errors map to which status and how the
body is worded. Validation errors are ``400`` with every field's errors at once,
each named by its path in the input (``destinations[0].host``, ``lifetime_hours``).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_standardized_errors.formatter import ExceptionFormatter
from drf_standardized_errors.handler import ExceptionHandler
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from foundation.errors import TransitionError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:egress-portal:problem:"


class Conflict(exceptions.APIException):
    """The object's state forbids the change (an illegal transition, a reused idempotency key)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource changed since the version named in If-Match."
    default_code = "precondition_failed"


class Refusal(DjangoPermissionDenied):
    """A refusal (403) with a stable ``code`` and fields a client can act on, for pages and the API alike.

    Services raise it where Django's ``PermissionDenied`` would do; the API
    answers with the code and every ``extra`` field in the problem body.
    """

    def __init__(self, detail: str, *, code: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.extra = extra


class CodedPermissionDenied(exceptions.PermissionDenied):
    def __init__(self, detail: str, code: str, extra: Mapping[str, Any]) -> None:
        super().__init__(detail, code)
        self.extra = dict(extra)


def field_errors(detail: Any, path: str = "") -> list[dict[str, Any]]:
    """DRF's nested error detail as a flat list of ``{field, message, code}``.

    List rows are ``[i]``, object keys ``.key``; ``non_field_errors`` belongs to the
    object it sits in (``null`` for the body itself)."""
    if isinstance(detail, Mapping):
        rows: list[dict[str, Any]] = []
        for key, value in detail.items():
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and path):
                child = f"{path}[{key}]"
            elif key == api_settings.NON_FIELD_ERRORS_KEY:
                child = path
            else:
                child = f"{path}.{key}" if path else str(key)
            rows.extend(field_errors(value, child))
        return rows
    if isinstance(detail, list):
        rows = []
        for index, value in enumerate(detail):
            if isinstance(value, Mapping | list):
                rows.extend(field_errors(value, f"{path}[{index}]"))
            else:
                rows.extend(field_errors(value, path))
        return rows
    code = getattr(detail, "code", None) or "invalid"
    return [{"field": path or None, "message": str(detail), "code": code}]


def _django_validation_detail(exc: DjangoValidationError) -> Any:
    if hasattr(exc, "error_dict"):
        return {
            field: [exceptions.ErrorDetail(str(m), code=e.code or "invalid") for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}


class ProblemExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, DjangoValidationError):
            return exceptions.ValidationError(_django_validation_detail(exc))
        if isinstance(exc, TransitionError):
            return Conflict(str(exc), code="illegal_transition")
        if isinstance(exc, Refusal):
            return CodedPermissionDenied(str(exc), exc.code, exc.extra)
        if isinstance(exc, DjangoPermissionDenied):
            return exceptions.PermissionDenied(str(exc) or None)
        if isinstance(exc, Http404):
            return exceptions.NotFound()
        return super().convert_known_exceptions(exc)

    def get_response(self, exc: exceptions.APIException, data: dict[str, Any]) -> Response:
        return Response(data, status=exc.status_code, headers=self.get_headers(exc), content_type=PROBLEM_CONTENT_TYPE)


class ProblemFormatter(ExceptionFormatter):
    def run(self) -> dict[str, Any]:
        status_code = self.exc.status_code
        if isinstance(self.exc, exceptions.ValidationError):
            errors = field_errors(self.exc.detail)
            fields = sorted({e["field"] or "(body)" for e in errors})
            return problem(
                status_code,
                "validation_error",
                f"{len(errors)} error(s) in the input: {', '.join(fields)}. Each is listed in 'errors'.",
                errors=errors,
            )
        detail = self.exc.detail
        code = getattr(detail, "code", None) or self.exc.default_code
        return problem(status_code, str(code), str(detail), **getattr(self.exc, "extra", {}))


def problem(status_code: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 body; ``code`` is the stable, machine-readable name of the problem."""
    return {
        "type": f"{PROBLEM_TYPE_PREFIX}{code}",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "code": code,
        "detail": detail,
        **extra,
    }


class UnknownRoute(APIView):
    """Any path under /api/ that names no endpoint: a 404 problem for every method,
    before authentication, so the route table is the same for everyone."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    schema = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise exceptions.NotFound(f"No API endpoint at {request.path}; the endpoints are listed at /api/v1/schema/.")
