"""Every API error is one RFC 9457 problem shape, whatever raised it."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from exceptions.models import ExceptionRequest
from tests.api_problems import field_errors, problem

pytestmark = pytest.mark.django_db


def api(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_every_field_error_is_reported_at_once_with_its_input_path(requester: Any, workload: Any) -> None:
    body = {
        "workload": workload.pk,
        "destinations": [{"host": "api.partner.example", "port": 443}, {"host": "b.partner.example", "port": 0}],
        "purpose": "sightseeing",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "lifetime_hours": "soon",
        "colour": "blue",
    }
    errors = field_errors(api(requester).post("/api/v1/requests/", body, format="json"))
    assert set(errors) == {"destinations[1].port", "purpose", "lifetime_hours", "colour"}
    assert "Unknown field" in errors["colour"][0] and "workload" in errors["colour"][0]
    assert ExceptionRequest.objects.count() == 0


def test_unknown_field_inside_a_destination_is_named_by_its_path(requester: Any, workload: Any) -> None:
    body = {
        "workload": workload.pk,
        "destinations": [{"host": "api.partner.example", "port": 443, "tls": False}],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "lifetime_hours": 24,
    }
    errors = field_errors(api(requester).post("/api/v1/requests/", body, format="json"))
    assert list(errors) == ["destinations[0].tls"]


def test_a_body_that_is_not_an_object_is_a_body_level_error(requester: Any) -> None:
    errors = field_errors(api(requester).post("/api/v1/requests/", [1, 2], format="json"))
    assert list(errors) == [None]


def test_unknown_route_under_api_is_a_404_problem_for_everyone(requester: Any) -> None:
    for client in (api(), api(requester)):
        for path in ("/api/v1/nothing-here/", "/api/v2/requests/", "/api/v1/requests"):
            body = problem(client.get(path), 404)
            assert body["code"] == "not_found" and body["title"] == "Not Found"
        assert problem(client.delete("/api/v1/nothing/"), 404)["code"] == "not_found"


def test_missing_object_is_a_404_problem(requester: Any) -> None:
    assert problem(api(requester).get("/api/v1/requests/999999/"), 404)["code"] == "not_found"


def test_wrong_method_is_a_405_problem(requester: Any) -> None:
    response = api(requester).delete("/api/v1/requests/")
    assert problem(response, 405)["code"] == "method_not_allowed"


def test_no_credentials_is_a_401_problem_with_a_challenge() -> None:
    response = api().get("/api/v1/requests/")
    assert problem(response, 401)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_media_type_is_a_415_problem(requester: Any) -> None:
    response = api(requester).post("/api/v1/requests/", "a=b", content_type="text/csv")
    assert problem(response, 415)["code"] == "unsupported_media_type"


def test_malformed_json_is_a_400_problem(requester: Any) -> None:
    response = api(requester).post("/api/v1/requests/", "{nope", content_type="application/json")
    assert problem(response, 400)["code"] == "parse_error"


def test_a_nul_in_an_api_query_is_a_problem_naming_the_parameter(requester: Any) -> None:
    errors = field_errors(api(requester).get("/api/v1/requests/", {"team": "a\x00b"}))
    assert list(errors) == ["team"]
