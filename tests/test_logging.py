from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.test import Client

from approvals.services import approve_request, reject_request
from exceptions.explain import explain
from foundation.context import request_id_scope
from foundation.logging import logging_config


def _decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "egress_portal.decisions" and isinstance(record.msg, dict)
    ]


def _as_json(record: logging.LogRecord) -> dict[str, Any]:
    """Render a record the way production does (LOGGING's formatter, JSON)."""
    config = logging_config(fmt="json", level="INFO")["formatters"]["structured"]
    factory = config.pop("()")
    line = factory(**config).format(record)
    parsed: dict[str, Any] = json.loads(line)
    return parsed


@pytest.mark.django_db
def test_approve_and_reject_each_log_one_structured_decision_line(
    submit: Any, approver: Any, workload: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress_portal.decisions")
    approved, rejected = submit(), submit(ticket_ref="CHG-2")
    with request_id_scope("req-approve"):
        approve_request(actor=approver, request=approved, reason="fine")
    reject_request(actor=approver, request=rejected, reason="use the shared proxy")
    first, second = _decisions(caplog)
    assert {k: first[k] for k in ("decision", "actor", "identity", "outcome", "reason", "request_id")} == {
        "decision": "approve",
        "actor": "bob",
        "identity": workload.identity,
        "outcome": "active",
        "reason": "fine",
        "request_id": "req-approve",
    }
    assert first["exception_request"] == approved.pk
    assert (second["decision"], second["outcome"], second["reason"]) == ("reject", "rejected", "use the shared proxy")
    line = _as_json(next(r for r in caplog.records if r.name == "egress_portal.decisions"))
    assert line["event"] == "decision" and line["level"] == "info" and line["decision"] == "approve"
    assert line["timestamp"].endswith("Z")


@pytest.mark.django_db
def test_a_refused_decision_is_not_logged(submit: Any, requester: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="egress_portal.decisions")
    with pytest.raises(PermissionDenied):
        approve_request(actor=requester, request=submit(), reason="my own")
    assert _decisions(caplog) == []


@pytest.mark.django_db
def test_explain_logs_identity_matched_rule_and_reason(
    submit: Any, approver: Any, workload: Any, caplog: pytest.LogCaptureFixture
) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    caplog.set_level(logging.INFO, logger="egress_portal.decisions")
    explain(identity=workload.identity, host="api.partner.example", port=443)
    explain(identity=workload.identity, host="elsewhere.example", port=443)
    allowed, denied = [line for line in _decisions(caplog) if line["decision"] == "explain"]
    assert (allowed["decision"], allowed["outcome"], allowed["rule"]) == (
        "explain",
        "allow",
        "exact host api.partner.example",
    )
    assert allowed["identity"] == workload.identity and allowed["grant_id"]
    assert (denied["outcome"], denied["rule"], denied["host"]) == ("deny", "", "elsewhere.example")
    assert denied["reason"]


@pytest.mark.django_db
def test_every_request_logs_its_request_id_and_user(
    client: Client, requester: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client.force_login(requester)
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-42")
    assert response["X-Request-ID"] == "trace-42"
    finished = [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request_finished"]
    assert len(finished) == 1
    line = _as_json(finished[0])
    assert (line["request_id"], line["user_id"], line["code"]) == ("trace-42", requester.pk, 200)
    assert line["request"] == "GET /healthz"


def test_settings_render_json_logs_by_default() -> None:
    assert settings.LOG_FORMAT == "json"
    assert "django_structlog.middlewares.RequestMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db
def test_a_publish_logs_its_outcome_revision_and_commit(caplog: pytest.LogCaptureFixture) -> None:
    from exceptions.models import BundlePublication
    from foundation.logging import log_publication

    caplog.set_level(logging.INFO, logger="egress_portal.decisions")
    published = BundlePublication.objects.create(
        status="published", revision="r42", commit="abc123", trigger="grant change", added=2, grant_count=7
    )
    failed = BundlePublication.objects.create(status="failed", revision="r43", trigger="schedule", error="timeout")
    log_publication(published)
    log_publication(failed)
    first, second = _decisions(caplog)
    assert {k: first[k] for k in ("decision", "outcome", "reason", "revision", "commit", "added", "grant_count")} == {
        "decision": "publish",
        "outcome": "published",
        "reason": "grant change",
        "revision": "r42",
        "commit": "abc123",
        "added": 2,
        "grant_count": 7,
    }
    assert (second["outcome"], second["error"]) == ("failed", "timeout")
    assert [r.levelname for r in caplog.records if r.name == "egress_portal.decisions"] == ["INFO", "WARNING"]
