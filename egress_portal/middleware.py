"""Give every HTTP request an id that reaches the audit log and the response."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from foundation.context import request_id_scope

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        with request_id_scope(incoming if _SAFE_ID.fullmatch(incoming) else None) as request_id:
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class RefuseNulInQueryMiddleware:
    """A NUL character in the path or the query string is refused with a 400 saying where.

    PostgreSQL cannot hold or compare NUL in text, so a NUL reaching a filter
    (the admin's list filters, or a path value such as the audit viewer's
    object id) would be a 500. Forms and the API refuse NUL in bodies
    themselves, field by field.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return self._refuse(request, "path", "The address contains a NUL character (%00); remove it and try again.")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                shown = name.replace("\x00", "\\0")
                message = f"The query parameter '{shown}' contains a NUL character; remove it and try again."
                return self._refuse(request, shown, message)
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, field: str, message: str) -> HttpResponse:
        if request.path.startswith("/api/"):
            # The API's one error shape (issue 10), so a client parses every 400 the same way.
            from foundation.problems import PROBLEM_CONTENT_TYPE, problem

            body = problem(
                400,
                "validation_error",
                message,
                errors=[{"field": field, "message": message, "code": "null_characters_not_allowed"}],
            )
            return HttpResponseBadRequest(json.dumps(body), content_type=PROBLEM_CONTENT_TYPE)
        return HttpResponseBadRequest(message + "\n", content_type="text/plain; charset=utf-8")


class StateConflictMiddleware:
    """A page whose action met a state change (a request decided meanwhile) answers 409
    with the reason and a way back, as the API does, instead of a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from exceptions.state import TransitionError

        if not isinstance(exception, TransitionError) or request.path.startswith("/api/"):
            return None
        return render(request, "conflict.html", {"reason": str(exception)}, status=409)
