"""tools/egress-check run as a subprocess against a live portal with a real token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvals.services import approve_request
from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from exceptions.tokens import create_token

TOOL = Path(__file__).resolve().parents[2] / "tools" / "egress-check" / "egress_check.py"
JUSTIFICATION = "Uploads settlement files to the partner's SFTP server every night at 02:00."

pytestmark = pytest.mark.django_db(transaction=True)


def run(
    config: dict[str, Any] | None,
    tmp_path: Path,
    *args: str,
    token: str | None,
    url: str | None,
    name: str = "egress.yaml",
    python: tuple[str, ...] = (sys.executable,),
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    if config is not None:
        path.write_text(json.dumps(config) if name.endswith(".json") else yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EGRESS_", "DJANGO"))}
    if token is not None:
        env["EGRESS_TOKEN"] = token
    argv = [*python, str(TOOL), "-f", str(path), *args]
    if url is not None:
        argv += ["--url", url]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path)


@pytest.fixture
def portal(live_server: Any, requester: Any, approver: Any, workload: Any, submit: Any) -> dict[str, Any]:
    """api.partner.example:443 allowed, sftp.partner.example:22 pending, a CI token for alice."""
    approve_request(actor=approver, request=submit(), reason="ok")
    pending = submit(destinations=[{"host": "sftp.partner.example", "port": 22}])
    _, key = create_token(actor=requester, user=requester, name="ci", scopes=["explain", "requests:write"])
    return {"url": live_server.url, "token": key, "pending": pending}


def config(*endpoints: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"workload": "payments/checkout-api", "endpoints": list(endpoints), **extra}


ALLOWED = {"host": "api.partner.example", "port": 443}
PENDING = {"host": "sftp.partner.example", "port": 22}
MISSING = {"host": "cdn.vendor.example", "port": 443, "protocol": "tcp"}


def test_all_allowed_exits_0_with_the_expiry(portal: dict[str, Any], tmp_path: Path) -> None:
    result = run(config(ALLOWED), tmp_path, token=portal["token"], url=portal["url"])
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "api.partner.example:443/tcp" in line)
    assert "allowed" in line and "until 20" in line and "UTC" in line


def test_pending_only_exits_4_and_names_the_request(portal: dict[str, Any], tmp_path: Path) -> None:
    result = run(config(ALLOWED, PENDING), tmp_path, token=portal["token"], url=portal["url"])
    assert result.returncode == 4, result.stderr
    line = next(line for line in result.stdout.splitlines() if "sftp.partner.example:22/tcp" in line)
    assert "pending" in line and f"/requests/{portal['pending'].pk}/" in line


def test_missing_or_invalid_exits_1_with_one_aligned_line_each(portal: dict[str, Any], tmp_path: Path) -> None:
    endpoints = (ALLOWED, PENDING, MISSING, {"host": "10.0.0.8", "port": 443})
    result = run(config(*endpoints), tmp_path, token=portal["token"], url=portal["url"])
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stdout.splitlines() if "/tcp " in line]
    assert len(lines) == 4
    assert (
        len(
            {line.index(status) for line, status in zip(lines, ["allowed", "pending", "needs", "invalid"], strict=True)}
        )
        == 1
    )
    assert "--file-requests" in lines[2] and "IP address literal" in lines[3]
    assert "1 allowed, 1 pending, 1 needs request, 1 invalid" in result.stdout
    assert ExceptionRequest.objects.count() == 2  # checking files nothing


def test_json_config_runs_without_any_third_party_package(portal: dict[str, Any], tmp_path: Path) -> None:
    # -S: no site-packages at all, so neither Django nor PyYAML can be imported.
    result = run(
        config(ALLOWED, MISSING),
        tmp_path,
        "--json",
        token=portal["token"],
        url=portal["url"],
        name="egress.json",
        python=(sys.executable, "-I", "-S"),
    )
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    assert [row["status"] for row in answer["results"]] == ["allowed", "needs_request"]


def test_file_requests_files_the_missing_ones_as_the_tokens_user(
    portal: dict[str, Any], tmp_path: Path, requester: Any
) -> None:
    defaults = {
        "purpose": "partner_api",
        "data_class": "confidential",
        "justification": JUSTIFICATION,
        "lifetime_days": 7,
        "ticket": "CHG-77",
    }
    other = {"host": "status.vendor.example", "port": 443}
    result = run(
        config(ALLOWED, PENDING, MISSING, other, request=defaults),
        tmp_path,
        "--file-requests",
        token=portal["token"],
        url=portal["url"],
    )
    assert result.returncode == 4, result.stdout + result.stderr  # filed: now awaiting approval
    filed = ExceptionRequest.objects.exclude(pk=portal["pending"].pk).get(status="pending")
    assert filed.requester == requester and filed.ticket_ref == "CHG-77" and filed.data_class == "confidential"
    assert sorted(d.host for d in filed.destinations.all()) == ["cdn.vendor.example", "status.vendor.example"]
    assert filed.lifetime.days == 7
    assert f"filed request {filed.pk}" in result.stdout
    event = AuditEvent.objects.get(action="request.submitted", object_id=str(filed.pk))
    assert (event.actor_kind, event.actor_label) == ("token", "alice via token ci")
    again = run(None, tmp_path, token=portal["token"], url=portal["url"])
    assert again.returncode == 4, again.stdout  # the filed ones now show as pending


def test_file_requests_refuses_when_the_file_lacks_what_a_request_needs(portal: dict[str, Any], tmp_path: Path) -> None:
    result = run(
        config(MISSING, request={"purpose": "partner_api", "data_class": "internal"}),
        tmp_path,
        "--file-requests",
        token=portal["token"],
        url=portal["url"],
    )
    assert result.returncode == 2
    assert "not filing" in result.stderr and "justification, lifetime" in result.stderr
    assert ExceptionRequest.objects.count() == 2


def test_file_requests_reports_the_portals_refusal_by_field(portal: dict[str, Any], tmp_path: Path) -> None:
    defaults = {"purpose": "partner_api", "data_class": "internal", "justification": "too short", "lifetime_hours": 24}
    result = run(
        config(MISSING, request=defaults), tmp_path, "--file-requests", token=portal["token"], url=portal["url"]
    )
    assert result.returncode == 1
    assert "justification:" in result.stderr and "at least 30 characters" in result.stderr


def test_usage_and_configuration_errors_exit_2(portal: dict[str, Any], tmp_path: Path) -> None:
    assert run(config(ALLOWED), tmp_path, token=None, url=portal["url"]).returncode == 2  # no token
    bad = run(config({"host": "a.example.org", "port": "https"}, extra=1), tmp_path, token="x", url=portal["url"])
    assert bad.returncode == 2 and "endpoints[0].port" in bad.stderr and "unknown key 'extra'" in bad.stderr
    unknown = run(
        {"workload": "payments/nothing", "endpoints": [ALLOWED]}, tmp_path, token=portal["token"], url=portal["url"]
    )
    assert unknown.returncode == 2 and "identity:" in unknown.stderr
    assert run(config(ALLOWED), tmp_path, token=portal["token"], url="ftp://portal").returncode == 2


def test_an_unreachable_portal_or_a_refused_token_exit_3(portal: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = run(config(ALLOWED), tmp_path, token=portal["token"], url=f"http://127.0.0.1:{closed_port}")
    assert down.returncode == 3 and "cannot reach the portal" in down.stderr
    revoked = run(config(ALLOWED), tmp_path, token="egp_0000_nope", url=portal["url"])
    assert revoked.returncode == 3 and "refused the token (401)" in revoked.stderr
