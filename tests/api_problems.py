"""Reading the API's RFC 9457 problem documents in tests."""

from __future__ import annotations

from typing import Any


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem body, after checking it is one, with the status it names."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = dict(response.json())
    assert body["status"] == status and body["type"] == f"urn:egress-portal:problem:{body['code']}"
    return body


def field_errors(response: Any, status: int = 400) -> dict[str | None, list[str]]:
    """``{field path: [messages]}`` of a validation problem."""
    body = problem(response, status)
    assert body["code"] == "validation_error", body
    errors: dict[str | None, list[str]] = {}
    for error in body["errors"]:
        errors.setdefault(error["field"], []).append(error["message"])
    return errors
