"""One bounded parser reads every number: ASCII digits only, a named range per field."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from exceptions.validators import LIFETIME_HOURS, PAGE_LIMIT, PORT, parse_bounded_int
from tests.api_problems import field_errors


@pytest.mark.parametrize(
    "value", ["²", "٤٤٣", "1.0", "1e3", "0x1bb", "1_000", "+443", "", " ", True, 443.0, None, [443]]
)
def test_only_ascii_digits_are_numbers(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        parse_bounded_int(value, PORT)
    assert "port" in info.value.messages[0]


@pytest.mark.parametrize(
    ("value", "word"), [("0", "small"), ("-5", "small"), ("65536", "large"), ("9" * 5000, "large")]
)
def test_numbers_outside_the_range_name_the_field_and_the_range(value: str, word: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_bounded_int(value, PORT)
    assert info.value.messages == [f"The port is too {word}; enter a whole number from 1 to 65535."]


def test_whole_numbers_in_range_are_read() -> None:
    assert parse_bounded_int(" 443 ", PORT) == 443
    assert parse_bounded_int(200, PAGE_LIMIT) == 200


@pytest.mark.django_db
def test_a_huge_lifetime_is_a_400_naming_the_field(requester: Any, workload: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    body = {
        "workload": workload.pk,
        "destinations": [{"host": "api.partner.example", "port": 443}],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "lifetime_hours": 10**40,
    }
    response = client.post("/api/v1/requests/", body, format="json")
    assert field_errors(response)["lifetime_hours"] == [
        f"The lifetime in hours is too large; enter a whole number from 1 to {LIFETIME_HOURS.maximum}."
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/requests/", "/api/v1/grants/", "/api/v1/workloads/"])
def test_list_limits_are_capped(path: str, requester: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    assert client.get(path, {"limit": 200}).status_code == 200
    refused = client.get(path, {"limit": 201})
    assert "limit" in field_errors(refused)
    # The request list pages by cursor (stable for sync), the others by offset.
    position = "cursor" if path == "/api/v1/requests/" else "offset"
    assert position in field_errors(client.get(path, {position: "²"}))


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["renews=²", "workload=²", "renews=99999999999999999999999"])
def test_request_page_names_a_bad_number_in_the_address(client: Any, requester: Any, query: str) -> None:
    client.force_login(requester)
    response = client.get(f"/requests/new/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.content.decode()


MALFORMED_BODIES = [
    "[" * 100_000,
    '{"a":' * 50_000,
    '"\\ud800"',
    "\xff\xfe",
    '{"workload": 1e999}',
    "NaN",
    '{"destinations": [' + '{"host": "a.example", "port": 443},' * 3000 + "1]}",
]


@pytest.mark.django_db
@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=range(len(MALFORMED_BODIES)))
def test_malformed_json_bodies_are_a_400(requester: Any, body: str) -> None:
    from exceptions.models import ExceptionRequest

    client = APIClient()
    client.force_authenticate(requester)
    response = client.post("/api/v1/requests/", body, content_type="application/json")
    assert response.status_code == 400
    assert not ExceptionRequest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("port", ["٤٤٣", "\uff14\uff14\uff13", "+443", "4_43", 443.0, "443.0", True])
def test_preflight_reads_ports_with_the_same_parser_as_requests(requester: Any, workload: Any, port: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    body = {"workload": workload.pk, "destinations": [{"host": "api.partner.example", "port": port}]}
    response = client.post("/api/v1/preflight/", body, format="json")
    [message] = field_errors(response)["destinations[0].port"]
    assert "port" in message and "1 to 65535" in message
    if isinstance(port, str):
        assert message.endswith("in the digits 0-9.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("days", "400", "The lifetime in days is too large; enter a whole number from 1 to 366."),
        ("hours", "9000", "The lifetime in hours is too large; enter a whole number from 1 to 8784."),
        ("days", "٤٨", "'٤٨' is not a valid lifetime in days; enter a whole number from 1 to 366, in the digits 0-9."),
    ],
)
def test_the_lifetime_error_names_the_chosen_unit_and_its_limit(
    client: Any, requester: Any, workload: Any, unit: str, value: str, expected: str
) -> None:
    client.force_login(requester)
    response = client.get(
        "/requests/preview/", {"workload": workload.pk, "lifetime_value": value, "lifetime_unit": unit}
    )
    assert response.json()["errors"]["lifetime"] == [expected]


@pytest.mark.django_db
def test_narrowing_refuses_other_digits_and_huge_lifetimes(client: Any, approver: Any, submit: Any) -> None:
    from approvals.services import approve_request

    pending = submit()
    api = APIClient()
    api.force_authenticate(approver)
    for value in ["٤٨", 10**20]:
        response = api.post(f"/api/v1/requests/{pending.pk}/approve/", {"lifetime_hours": value}, format="json")
        assert "lifetime in hours" in field_errors(response)["lifetime_hours"][0]
    client.force_login(approver)
    for value in ["٤٨", "100000000000"]:
        response = client.post(f"/approvals/{pending.pk}/approve/", {"lifetime_hours": value})
        assert response.status_code == 400  # the request page again, the error on the lifetime field
        assert 'data-field="lifetime_hours">' in response.content.decode()
        assert "lifetime in hours" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert approve_request(actor=approver, request=pending)  # untouched by the refusals
