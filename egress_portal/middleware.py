"""Give every HTTP request an id that reaches the audit log and the response."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from egress_portal.context import request_id_scope

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        with request_id_scope(incoming if _SAFE_ID.match(incoming) else None) as request_id:
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
