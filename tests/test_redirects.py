"""Every ``next=`` a page follows stays on this site (issue 17 §5: the approve form redirected off-site)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("approvals", "audit", "egress_portal", "exceptions", "foundation", "outcomes", "traffic", "webhooks")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("wanted", "lands"),
    [
        ("https://evil.example/phish", None),
        ("//evil.example/phish", None),
        ("/\\evil.example", None),
        ("javascript:alert(1)", None),
        ("/approvals/", "/approvals/"),
    ],
)
def test_the_approve_form_follows_next_only_on_this_site(
    client: Client, submit: Any, approver: Any, wanted: str, lands: str | None
) -> None:
    request = submit()
    client.force_login(approver)
    response = client.post(f"/approvals/{request.pk}/approve/", {"reason": "ok", "next": wanted})
    assert response.status_code == 302
    assert response.url == (lands or f"/requests/{request.pk}/")


def _reads_next(source: str) -> list[int]:
    """Lines that read ``next`` from a request's GET or POST (``request.POST.get("next")`` and the like)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"get", "getlist"}:
            holder = node.func.value
            if (
                isinstance(holder, ast.Attribute)
                and holder.attr in {"GET", "POST"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "next"
            ):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in {"GET", "POST"}
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == "next"
        ):
            lines.append(node.lineno)
    return lines


def test_every_view_that_reads_next_goes_through_safe_next() -> None:
    readers = {
        f"{path.relative_to(ROOT).as_posix()}:{line}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "/migrations/" not in path.as_posix()
        for line in _reads_next(path.read_text())
    }
    assert {reader.split(":")[0] for reader in readers} == {"foundation/redirects.py"}, readers
    assert _reads_next('url = request.POST.get("next") or "/"') == [1]
    assert _reads_next('url = request.GET["next"]') == [1]
