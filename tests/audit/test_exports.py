from __future__ import annotations

import csv
import io
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from jwcrypto import jwk

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from audit.hashing import GENESIS_HASH, chain_hash
from audit.verification import PAYLOAD_FIELDS
from foundation import signing

URLS = {"jsonl": "/audit/export/events.jsonl", "csv": "/audit/export/events.csv"}


@pytest.fixture
def history(submit: Any, approver: Any, policy_repo: Path, settings: Any, tmp_path: Path) -> None:
    """Two approvals with a checkpoint after the first: events #1-#3, checkpoint #3, its event #4, #5-#7."""
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    approve_request(actor=approver, request=submit(), reason="fine")
    write_checkpoint()
    approve_request(actor=approver, request=submit(ticket_ref="CHG-2"), reason="also fine")


def _download(client: Any, user: Any, fmt: str, query: str = "") -> str:
    client.force_login(user)
    response = client.get(URLS[fmt] + query)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


def _verify(path: Path, *extra: str) -> str:
    out = StringIO()
    call_command("verify_audit", "--export", str(path), *extra, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_carries_its_checkpoint_and_verifies_offline(
    client: Any, auditor: Any, history: None, tmp_path: Path, fmt: str
) -> None:
    body = _download(client, auditor, fmt)
    export = tmp_path / f"audit.{fmt}"
    export.write_text(body)
    out = _verify(export)
    assert "Audit chain intact: 7 events verified" in out and "anchored by checkpoint #3" in out
    assert "Events #4..#7 come after the checkpoint and are not anchored yet." in out
    public_key = tmp_path / "portal.pub.pem"
    public_key.write_text(signing.public_key_pem())
    assert "anchored by checkpoint #3" in _verify(export, "--public-key", str(public_key))
    # After a key rotation the auditor passes every key that may have signed.
    newer = tmp_path / "newer.pub.pem"
    newer.write_bytes(jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem(private_key=False))
    assert "anchored by checkpoint #3" in _verify(export, "--public-key", str(newer), "--public-key", str(public_key))
    with pytest.raises(CommandError, match="forged or signed by another key"):
        _verify(export, "--public-key", str(newer))


@pytest.mark.django_db
def test_export_is_refused_to_people_who_may_not_read_the_audit_log(client: Any, requester: Any) -> None:
    client.force_login(requester)
    assert client.get(URLS["csv"]).status_code == 404
    assert client.get(URLS["jsonl"]).status_code == 404


def _lines(body: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, *events = (json.loads(line) for line in body.splitlines())
    return header, events


def _write(path: Path, header: dict[str, Any], events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in [header, *events]))
    return path


@pytest.mark.django_db
def test_rewritten_export_contradicts_the_checkpoint_it_carries(
    client: Any, auditor: Any, history: None, tmp_path: Path
) -> None:
    header, events = _lines(_download(client, auditor, "jsonl"))
    prev = GENESIS_HASH
    for event in events:
        event["reason"] = "nothing to see"
        event["prev_hash"] = prev
        event["hash"] = prev = chain_hash(prev, {name: event[name] for name in PAYLOAD_FIELDS})
    with pytest.raises(CommandError, match=r"broken at sequence #3: contradicts checkpoint in the export header"):
        _verify(_write(tmp_path / "rewritten.jsonl", header, events))


@pytest.mark.django_db
def test_export_with_a_forged_checkpoint_fails(client: Any, auditor: Any, history: None, tmp_path: Path) -> None:
    header, events = _lines(_download(client, auditor, "jsonl"))
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    claims = {k: header["checkpoint"][k] for k in ("type", "seq", "head_hash", "time")}
    header["checkpoint"]["jws"] = signing.sign_jws(claims, key=other)
    with pytest.raises(CommandError, match=r"forged or signed by another key"):
        _verify(_write(tmp_path / "forged.jsonl", header, events))


@pytest.mark.django_db
def test_truncated_export_is_detected_through_its_header(
    client: Any, auditor: Any, history: None, tmp_path: Path
) -> None:
    header, events = _lines(_download(client, auditor, "jsonl"))
    with pytest.raises(CommandError, match=r"the file ends at #5 but its header says it runs through #7"):
        _verify(_write(tmp_path / "short.jsonl", header, events[:5]))


@pytest.mark.django_db
def test_filtered_export_holds_only_matching_events_and_each_verifies(
    client: Any, auditor: Any, history: None, tmp_path: Path
) -> None:
    body = _download(client, auditor, "csv", "?action=request.approved&actor=BOB&since=2000-01-01")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert json.loads(rows[0]["after"])["filters"] == {
        "action": "request.approved",
        "actor": "BOB",
        "since": "2000-01-01T00:00:00+00:00",
    }
    assert [(r["seq"], r["action"], r["actor_label"]) for r in rows[1:]] == [
        ("2", "request.approved", "bob"),
        ("6", "request.approved", "bob"),
    ]
    export = tmp_path / "approved.csv"
    export.write_text(body)
    assert "2 events verified" in _verify(export)
    rows[2]["reason"] = "edited"
    with export.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CommandError, match=r"#6: content does not match its hash"):
        _verify(export)


@pytest.mark.django_db
def test_export_before_any_later_day_is_empty_and_bad_dates_are_explained(
    client: Any, auditor: Any, history: None
) -> None:
    _, events = _lines(_download(client, auditor, "jsonl", "?until=2000-01-01"))
    assert events == []
    client.force_login(auditor)
    response = client.get(URLS["jsonl"] + "?since=yesterday")
    assert response.status_code == 400
    assert "since: 'yesterday' is not a date (YYYY-MM-DD)" in response.content.decode()
    response = client.get(URLS["csv"] + "?since=2026-02-01&until=2026-01-01")
    assert response.status_code == 400 and "until: must be later than since." in response.content.decode()


@pytest.mark.django_db
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_and_still_verify(
    client: Any, submit: Any, approver: Any, auditor: Any, tmp_path: Path
) -> None:
    approve_request(actor=approver, request=submit(), reason='=HYPERLINK("http://evil.example")')
    body = _download(client, auditor, "csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[2]["reason"] == '\'=HYPERLINK("http://evil.example")'
    export = tmp_path / "audit.csv"
    export.write_text(body)
    assert "3 events verified" in _verify(export, "--no-anchors")
