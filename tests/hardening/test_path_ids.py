"""Every URL with an id in its path answers a huge, zero or unknown id without a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _id_routes(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _id_routes(entry, route)
        elif isinstance(entry, URLPattern) and any(
            isinstance(c, IntConverter) for c in entry.pattern.converters.values()
        ):
            yield route


ID_ROUTES = [r for r in _id_routes(get_resolver()) if not r.startswith("admin/")]


def test_the_portal_has_id_routes_to_check() -> None:
    assert len(ID_ROUTES) >= 10


@pytest.mark.parametrize("route", ID_ROUTES)
@pytest.mark.parametrize("value", ["0", "9" * 30, "123456789"])
def test_every_id_in_a_path_is_answered_without_a_500(route: str, value: str, security_officer: Any) -> None:
    path = "/" + route.replace("<int:pk>", value)
    caller: Any
    if path.startswith("/api/"):
        caller = APIClient()
        caller.force_authenticate(security_officer)
    else:
        caller = Client()
        caller.force_login(security_officer)
    assert caller.get(path).status_code in {404, 405}, path
    assert caller.post(path, {}).status_code in {403, 404, 405}, path


@pytest.mark.parametrize("path", ["/metrics", "/bundles/egress.tar.gz", "/api/v1/requests/"])
@pytest.mark.parametrize("header", ["Bearer é", "Bearer egp_é_ü", "Bearer " + "x" * 10_000, "Bearer", "Basic Zm9v"])
def test_odd_authorization_headers_are_a_401(client: Client, settings: Any, path: str, header: str) -> None:
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get(path, HTTP_AUTHORIZATION=header).status_code in {401, 403}


@pytest.mark.parametrize("request_id", ["abc\n", "é", "x" * 65, "a b", ""])
def test_odd_request_ids_are_replaced_not_echoed(client: Client, request_id: str) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID=request_id)
    assert response.status_code < 500 and response["X-Request-ID"] != request_id


@pytest.mark.parametrize("path", ["/admin/exceptions/grant/", "/admin/exceptions/exceptionrequest/", "/requests/"])
def test_a_nul_in_any_query_parameter_is_a_400_naming_it(client: Client, admin_user: Any, path: str) -> None:
    client.force_login(admin_user)
    response = client.get(path, {"status__exact": "a\x00b"})
    assert response.status_code == 400 and b"status__exact" in response.content


def _text_routes(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _text_routes(entry, route)
        elif isinstance(entry, URLPattern) and "<" in route and not route.startswith("^"):
            yield route


TEXT_ROUTES = [r for r in _text_routes(get_resolver()) if not r.startswith(("admin/", "accounts/"))]


@pytest.mark.parametrize("route", TEXT_ROUTES)
def test_a_nul_in_any_path_value_is_a_400_not_a_500(route: str, security_officer: Any) -> None:
    """Issue 17: /audit/objects/%00/%00/ was a 500 on PostgreSQL; every route with a value in its path is tried."""
    path = "/" + re.sub(r"<[^>]+>", "%00", route)
    caller: Any = APIClient() if path.startswith("/api/") else Client()
    if isinstance(caller, APIClient):
        caller.force_authenticate(security_officer)
    else:
        caller.force_login(security_officer)
    response = caller.get(path)
    assert response.status_code in {400, 404}, (path, response.status_code)


def test_the_audit_object_page_refuses_a_nul_in_its_path(client: Client, security_officer: Any) -> None:
    client.force_login(security_officer)
    response = client.get("/audit/objects/%00/%00/")
    assert response.status_code == 400 and b"NUL" in response.content


@pytest.mark.django_db
def test_a_page_action_meeting_a_state_change_is_a_409_with_the_reason(rf: Any, requester: Any) -> None:
    from egress_portal.middleware import StateConflictMiddleware
    from exceptions.state import TransitionError

    request = rf.post("/approvals/1/approve/", HTTP_REFERER="/requests/1/")
    request.user = requester
    middleware = StateConflictMiddleware(lambda r: None)  # type: ignore[return-value]
    response = middleware.process_exception(request, TransitionError("Request #1 is active; only pending ..."))
    assert response is not None and response.status_code == 409
    assert b"Request #1 is active" in response.content and b'href="/requests/1/"' in response.content
    api_request = rf.post("/api/v1/requests/1/approve/")
    assert middleware.process_exception(api_request, TransitionError("x")) is None
