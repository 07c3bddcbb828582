"""No input gives a 500: every form field, query parameter and API body field,
fed arbitrary text, Unicode, huge and negative numbers, wrong JSON types and
missing values, gets a status below 500, an error that names the field, and
leaves no row written in any table.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from exceptions.api.serializers import DestinationInputSerializer, RequestInputSerializer
from exceptions.forms import DestinationForm, ExceptionRequestForm
from tests.factories import GrantFactory

pytestmark = pytest.mark.django_db

MISSING = object()
INSTANCES = ["²", "٤٤٣", "1.0", "1e3", " 7 ", "0x10", "-1", "0", "9" * 30, "-" + "9" * 30, "1_000", "", "\x00"]
TEXT = st.one_of(
    st.text(max_size=120),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(INSTANCES),
)
JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just(MISSING),
)
FORM_VALUE = st.one_of(TEXT, st.just(MISSING))
PROPERTY = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "4")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@cache
def _tables() -> tuple[str, ...]:
    return tuple(t for t in connection.introspection.table_names() if not t.startswith("sqlite_"))


def row_total() -> int:
    """Rows in every table, in one query."""
    tables = _tables()
    counts = " + ".join(f"(SELECT COUNT(*) FROM {connection.ops.quote_name(t)})" for t in tables)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        return int(cursor.fetchone()[0])


def api_payload(workload: Any) -> dict[str, Any]:
    return {
        "workload": workload.pk,
        "destinations": [
            {"host": "api.partner.example", "service": "", "port": 443, "protocol": "tcp", "tls_required": True}
        ],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "ticket_ref": "CHG-1",
        "lifetime_hours": 24,
        "desired_start": None,
        "renews": None,
        "draft": False,
    }


# Every field the serializers declare, so a new field is fuzzed without editing this list.
API_FIELDS = [
    *RequestInputSerializer().fields,
    "destinations.0",
    *(f"destinations.0.{name}" for name in DestinationInputSerializer().fields),
]


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if value is MISSING:
        if isinstance(target, dict):
            target.pop(key, None)  # optional fields (requester) are absent from the base body
        else:
            del target[key]
    else:
        target[key] = value


def assert_refusal_names(response: Any, field: str, before: int) -> None:
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert row_total() == before, f"{field}: a refused request wrote rows"
    if response.status_code == 400:
        body = response.content.decode()
        assert field.split(".")[0] in body, f"the error does not name {field}: {body[:500]}"


@pytest.mark.parametrize("field", API_FIELDS)
def test_api_request_body_fields(field: str, requester: Any, workload: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)

    @PROPERTY
    @given(value=JSON_VALUE)
    @example(value=10**30)
    @example(value="²")
    @example(value=MISSING)
    def check(value: Any) -> None:
        body = api_payload(workload)
        _put(body, field, value)
        before = row_total()
        response = client.post("/api/v1/requests/", json.dumps(body), content_type="application/json")
        assert_refusal_names(response, field, before)

    check()


FORM_FIELDS = [
    *ExceptionRequestForm.base_fields,
    *(f"dest-0-{name}" for name in DestinationForm.base_fields),
    "dest-TOTAL_FORMS",
]


def form_payload(workload: Any) -> dict[str, Any]:
    return {
        "workload": str(workload.pk),
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "ticket_ref": "CHG-1",
        "lifetime_value": "1",
        "lifetime_unit": "days",
        "desired_start": "",
        "renews": "",
        "dest-TOTAL_FORMS": "1",
        "dest-INITIAL_FORMS": "0",
        "dest-MIN_NUM_FORMS": "1",
        "dest-MAX_NUM_FORMS": "50",
        "dest-0-host": "api.partner.example",
        "dest-0-service": "",
        "dest-0-port": "443",
        "dest-0-protocol": "tcp",
        "dest-0-tls_required": "on",
    }


@pytest.mark.parametrize("field", FORM_FIELDS)
def test_request_form_fields(field: str, client: Client, requester: Any, workload: Any) -> None:
    client.force_login(requester)

    @PROPERTY
    @given(value=FORM_VALUE)
    @example(value="9" * 30)
    @example(value="٤٤٣")
    def check(value: Any) -> None:
        data = form_payload(workload)
        if value is MISSING:
            data.pop(field)
        else:
            data[field] = value
        before = row_total()
        response = client.post("/requests/new/", data)
        assert response.status_code < 500
        if response.status_code >= 400:
            assert row_total() == before
            body = response.content.decode()
            name = field.removeprefix("dest-0-")
            # A tampered row count is named by the rows it produces, or by Django's ManagementForm check.
            named = f'data-field="{name}"' in body or (
                field.startswith("dest-") and 'data-field="destinations"' in body
            )
            if field == "dest-TOTAL_FORMS":
                named = named or 'data-field="' in body
            assert named, f"the error does not name {field}: {body[:300]}"

    check()


QUERY_PARAMETERS = [
    ("/requests/", ["scope", "status", "page"]),
    ("/grants/", ["view", "page"]),
    ("/requests/new/", ["workload", "renews", "host", "port"]),
    ("/requests/preview/", ["workload", "host", "port", "lifetime_value", "lifetime_unit", "purpose", "data_class"]),
    ("/explain", ["identity", "host", "port", "protocol"]),
    ("/audit/", ["actor", "action", "object_type", "since", "until", "page"]),
    ("/bundles/publications/", ["page"]),
    (
        "/api/v1/requests/",
        [
            "status",
            "limit",
            "cursor",
            "ordering",
            "ticket_ref",
            "team",
            "workload",
            "requester",
            "environment",
            "updated_since",
        ],
    ),
    ("/api/v1/grants/", ["view", "limit", "offset"]),
    ("/api/v1/workloads/", ["limit", "offset"]),
    ("/api/v1/explain/", ["identity", "host", "port", "protocol"]),
    ("/api/v1/bundles/publications/", ["limit", "offset"]),
]
BASE_QUERY = {
    "/explain": {"identity": "payments/checkout-api", "host": "api.partner.example", "port": "443", "protocol": "tcp"},
    "/api/v1/explain/": {
        "identity": "payments/checkout-api",
        "host": "api.partner.example",
        "port": "443",
        "protocol": "tcp",
    },
}


@pytest.mark.parametrize(("path", "name"), [(path, name) for path, names in QUERY_PARAMETERS for name in names])
def test_query_parameters(path: str, name: str, client: Client, security_officer: Any, requester: Any) -> None:
    # The security officer sees every page, the audit log included; renews needs a real grant id to try.
    GrantFactory()
    client.force_login(security_officer)

    @PROPERTY
    @given(value=FORM_VALUE)
    @example(value="²")
    @example(value="9" * 5000)
    @example(value="-1")
    def check(value: Any) -> None:
        params = dict(BASE_QUERY.get(path, {}))
        if value is MISSING:
            params.pop(name, None)
        else:
            params[name] = value
        before = row_total()
        response = client.get(path, params)
        assert response.status_code < 500
        assert row_total() == before
        if response.status_code == 400:
            assert name in response.content.decode(), f"the error does not name {name}"

    check()


REASON_ENDPOINTS = [
    ("api", "/api/v1/requests/{request}/cancel/"),
    ("api", "/api/v1/requests/{request}/approve/"),
    ("api", "/api/v1/requests/{request}/reject/"),
    ("api", "/api/v1/grants/{grant}/revoke/"),
    ("page", "/requests/{request}/cancel/"),
    ("page", "/approvals/{request}/approve/"),
    ("page", "/approvals/{request}/reject/"),
    ("page", "/grants/{grant}/revoke/"),
]


@pytest.mark.parametrize(("kind", "template"), REASON_ENDPOINTS)
def test_reason_fields(kind: str, template: str, submit: Any, security_officer: Any, approver: Any) -> None:
    """Every decision's free-text reason, on the API and the pages; the actor may act on the object."""
    from approvals.services import approve_request

    [grant] = approve_request(actor=approver, request=submit())
    pending = submit(destinations=[{"host": "b.partner.example", "port": 443}])
    actor = approver if "/approv" in template or "/reject" in template else security_officer
    if "/requests/{request}/cancel/" in template:
        actor = pending.requester
    path = template.format(request=pending.pk, grant=grant.pk)
    api, client = APIClient(), Client()
    api.force_authenticate(actor)
    client.force_login(actor)

    @PROPERTY
    @given(value=JSON_VALUE if kind == "api" else FORM_VALUE)
    @example(value="\x00")
    @example(value="x" * 20_000)
    def check(value: Any) -> None:
        body = {} if value is MISSING else {"reason": value}
        before = row_total()
        response: Any = (
            api.post(path, json.dumps(body), content_type="application/json")
            if kind == "api"
            else client.post(path, body)
        )
        assert response.status_code < 500
        if response.status_code >= 400 and response.status_code != 409:
            assert row_total() == before
        if response.status_code == 400:
            assert "reason" in response.content.decode()

    check()


# --- Approvals: every decision form and body, field by field ----------------------------


def _approvals_setup(kind: str, submit: Any, approver: Any) -> dict[str, Any]:
    """A fresh object in the state the endpoint acts on, so every example reaches the field's parser."""
    from approvals.services import approve_request, request_changes

    serial = next(_SERIAL)
    pending = submit(destinations=[{"host": f"h{serial}.partner.example", "port": 443}])
    if kind == "changes":
        request_changes(actor=approver, request=pending, comment="Keep only the one host you need.")
    if kind == "grant":
        [grant] = approve_request(actor=approver, request=pending)
        return {"grant": grant.pk, "expires_at": (grant.expires_at - timedelta(hours=1)).isoformat()}
    return {"request": pending.pk, "destination": pending.destinations.get().pk}


_SERIAL = iter(range(10**9))


def _approve_page(ids: dict[str, Any]) -> dict[str, Any]:
    return {"reason": "Fine.", "lifetime_hours": "24", "drop": [], "confirm": "on"}


def _approve_api(ids: dict[str, Any]) -> dict[str, Any]:
    return {"reason": "Fine.", "lifetime_hours": 24, "keep_destinations": [ids["destination"]]}


def _reason(ids: dict[str, Any]) -> dict[str, Any]:
    return {"reason": "Only the one host is needed."}


def _resubmit_page(ids: dict[str, Any]) -> dict[str, Any]:
    from exceptions.models import ExceptionRequest

    data = form_payload(ExceptionRequest.objects.get(pk=ids["request"]).workload)
    data["dest-0-host"] = f"r{ids['request']}.partner.example"
    return data


def _resubmit_api(ids: dict[str, Any]) -> dict[str, Any]:
    from exceptions.models import ExceptionRequest

    body = api_payload(ExceptionRequest.objects.get(pk=ids["request"]).workload)
    for name in ("workload", "renews", "draft"):
        body.pop(name)
    return body


def _shorten(ids: dict[str, Any]) -> dict[str, Any]:
    return {"expires_at": ids["expires_at"], "reason": "The migration finished early."}


def _approval_endpoints() -> list[tuple[str, str, str, str, Any, list[str]]]:
    """(kind, state, actor, path, body, fields): each field of each decision, resubmission and grant action."""
    from approvals.api.views import ApproveInputSerializer, ResubmitInputSerializer, ShortenInputSerializer
    from approvals.forms import DecisionForm, ShortenForm

    resubmit_api_fields = [
        *ResubmitInputSerializer().fields,
        *(f"destinations.0.{name}" for name in DestinationInputSerializer().fields),
    ]
    return [
        ("page", "pending", "approver", "/approvals/{request}/approve/", _approve_page, [*DecisionForm.base_fields]),
        (
            "api",
            "pending",
            "approver",
            "/api/v1/requests/{request}/approve/",
            _approve_api,
            [*ApproveInputSerializer().fields, "keep_destinations.0"],
        ),
        ("page", "pending", "approver", "/approvals/{request}/reject/", _reason, ["reason"]),
        ("page", "pending", "approver", "/approvals/{request}/request-changes/", _reason, ["reason"]),
        ("api", "pending", "approver", "/api/v1/requests/{request}/request-changes/", _reason, ["reason"]),
        ("page", "changes", "requester", "/approvals/{request}/resubmit/", _resubmit_page, FORM_FIELDS),
        ("api", "changes", "requester", "/api/v1/requests/{request}/resubmit/", _resubmit_api, resubmit_api_fields),
        (
            "page",
            "grant",
            "security_officer",
            "/approvals/grants/{grant}/shorten/",
            _shorten,
            [*ShortenForm.base_fields],
        ),
        (
            "api",
            "grant",
            "security_officer",
            "/api/v1/grants/{grant}/shorten/",
            _shorten,
            [*ShortenInputSerializer().fields],
        ),
        ("page", "grant", "security_officer", "/approvals/grants/{grant}/do-not-renew/", _reason, ["reason"]),
        ("api", "grant", "security_officer", "/api/v1/grants/{grant}/do-not-renew/", _reason, ["reason"]),
    ]


APPROVAL_CASES = [
    pytest.param(kind, state, actor, path, body, field, id=f"{kind}:{path}:{field}")
    for kind, state, actor, path, body, fields in _approval_endpoints()
    for field in fields
]


@pytest.mark.parametrize(("kind", "state", "actor_name", "template", "body", "field"), APPROVAL_CASES)
def test_approval_fields(
    kind: str, state: str, actor_name: str, template: str, body: Any, field: str, request: Any, submit: Any
) -> None:
    """Approving with narrowing, rejecting, requesting changes, resubmitting, shortening, do-not-renew."""
    approver = request.getfixturevalue("approver")
    actor = request.getfixturevalue(actor_name)
    api, client = APIClient(), Client()
    api.force_authenticate(actor)
    client.force_login(actor)

    @PROPERTY
    @given(value=JSON_VALUE if kind == "api" else FORM_VALUE)
    @example(value=10**20 if kind == "api" else "100000000000")
    @example(value="٤٨")
    @example(value=MISSING)
    def check(value: Any) -> None:
        ids = _approvals_setup(state, submit, approver)
        data = body(ids)
        if kind == "api":
            _put(data, field, value)
        elif value is MISSING:
            data.pop(field, None)
        else:
            data[field] = value
        path = template.format(**ids)
        before = row_total()
        response: Any = (
            api.post(path, json.dumps(data), content_type="application/json")
            if kind == "api"
            else client.post(path, data)
        )
        assert response.status_code < 500, response.content[:500]
        if response.status_code >= 400 and response.status_code != 409:
            assert row_total() == before, f"{field}: a refused request wrote rows"
        if kind == "api" and response.status_code == 400:
            assert field.split(".")[0] in response.content.decode(), response.content[:500]

    check()
