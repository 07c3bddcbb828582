"""What every API endpoint shares: Idempotency-Key on POST, ETag and conditional requests.

``ETag`` is a digest of the object's representation as the caller sees it, so a
tool that polls with ``If-None-Match`` gets ``304`` until something it can see
changed; ``If-Match`` on an action is ``412`` when the object changed since.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exceptions.access import access_grant, access_request, visible_requests
from exceptions.api import idempotency
from exceptions.api.serializers import ExceptionRequestSerializer, GrantSerializer
from exceptions.models import ExceptionRequest
from foundation.problems import PreconditionFailed
from foundation.ratelimit import rate_limit_headers

REQUEST = "request"
GRANT = "grant"


@contextmanager
def api_field_names(names: Mapping[str, str]) -> Iterator[None]:
    """A service's field-keyed errors under this endpoint's field names (the service's
    ``lifetime`` is the API's ``lifetime_hours``)."""
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise
        raise DjangoValidationError({names.get(key, key): value for key, value in exc.message_dict.items()}) from exc


LIFETIME_AS_HOURS = {"lifetime": "lifetime_hours"}


def request_queryset(user: object) -> QuerySet[ExceptionRequest]:
    return (
        visible_requests(user)
        .select_related("workload__team", "requester", "filed_by", "decided_by")
        .prefetch_related("destinations", "grants__workload__team", "decisions__actor")
    )


def render_request(user: object, pk: int, *, status_code: int = status.HTTP_200_OK) -> Response:
    """The request as the API returns it, read fresh after any change."""
    serializer = ExceptionRequestSerializer(request_queryset(user).get(pk=pk), context={"user": user})
    headers = {"Location": f"/api/v1/requests/{pk}/"} if status_code == status.HTTP_201_CREATED else None
    return Response(serializer.data, status=status_code, headers=headers)


def render_created(user: object, created: ExceptionRequest) -> Response:
    """The 201 of a request just filed, from the rows the service wrote and holds (no read-back).

    ``submit_request`` leaves its destinations, and no grants or decisions, on the object;
    the body equals what a GET of the request returns."""
    serializer = ExceptionRequestSerializer(created, context={"user": user})
    return Response(
        serializer.data, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/requests/{created.pk}/"}
    )


# Computed from the clock, not stored: "if approved now it goes live at <now>" would
# otherwise change the tag on every read. A change of stored state still changes it.
VOLATILE_FIELDS = frozenset({"go_live"})


def etag_of(data: Any) -> str:
    stable = {k: v for k, v in data.items() if k not in VOLATILE_FIELDS} if isinstance(data, dict) else data
    return '"' + hashlib.sha256(JSONRenderer().render(stable)).hexdigest()[:40] + '"'


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def current_etag(user: Any, kind: str, pk: Any) -> str:
    """The ETag a GET of the object would carry now (404 when the caller cannot see it)."""
    if kind == REQUEST:
        return etag_of(render_request(user, access_request(user, pk).pk).data)
    return etag_of(GrantSerializer(access_grant(user, pk), context={"user": user}).data)


class IntegrationView(APIView):
    """Base of every API endpoint.

    ``etag_kind`` names the object (``request`` or ``grant``) a view with a ``pk``
    shows or acts on: GETs carry its ETag, POSTs honour ``If-Match``."""

    etag_kind = ""
    _claim: idempotency.Claim | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self._claim = None
        super().initial(request, *args, **kwargs)
        if request.method == "POST":
            if_match = request.headers.get("If-Match")
            if if_match and self.etag_kind and "pk" in kwargs:
                tags = _tags(if_match)
                if "*" not in tags and current_etag(request.user, self.etag_kind, kwargs["pk"]) not in tags:
                    raise PreconditionFailed(
                        f"The {self.etag_kind} changed since the version in If-Match; GET it again and retry."
                    )
            self._claim = idempotency.begin(request)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, idempotency.Replay):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if self._claim is not None:
            idempotency.finish(self._claim, response)
            self._claim = None
        if self.etag_kind and request.method in {"GET", "HEAD"} and response.status_code == status.HTTP_200_OK:
            tag = etag_of(response.data)
            if_none_match = _tags(request.headers.get("If-None-Match", ""))
            if tag in if_none_match or "*" in if_none_match:
                response = Response(status=status.HTTP_304_NOT_MODIFIED)
            response["ETag"] = tag
        budget = getattr(request._request, "ratelimit_budget", None)
        if budget is not None:
            for name, value in rate_limit_headers(budget).items():
                response[name] = value
        return super().finalize_response(request, response, *args, **kwargs)
