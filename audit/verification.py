"""Walk the chain and report the first event that does not hold.

The same walk checks the database and an exported JSON-lines file, so an
auditor can verify an export offline with nothing but this code (or any
SHA-256 and canonical-JSON implementation).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.hashing import GENESIS_HASH, chain_hash, event_payload
from audit.models import AuditChainHead, AuditEvent

PAYLOAD_FIELDS = (
    "seq", "created_at", "actor_id", "actor_kind", "actor_label", "action", "object_type", "object_id",
    "before", "after", "reason", "request_id", "context",
)  # fmt: skip


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str = ""
    last_hash: str = GENESIS_HASH


def export_record(event: AuditEvent) -> dict[str, Any]:
    """One event as exported: the hashed payload plus its chain links."""
    payload = event_payload(**{name: getattr(event, name) for name in PAYLOAD_FIELDS})
    return {**payload, "prev_hash": event.prev_hash, "hash": event.hash}


def walk(records: Iterable[dict[str, Any]]) -> VerificationResult:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for record in records:
        seq = record.get("seq")
        if seq != expected_seq:
            return VerificationResult(False, checked, expected_seq, f"event #{expected_seq} is missing", prev_hash)
        if record.get("prev_hash") != prev_hash:
            return VerificationResult(
                False, checked, seq, "prev_hash does not match the previous event's hash", prev_hash
            )
        payload = {name: record.get(name) for name in PAYLOAD_FIELDS if name != "context" or record.get(name)}
        if chain_hash(prev_hash, payload) != record.get("hash"):
            return VerificationResult(False, checked, seq, "content does not match its hash (altered)", prev_hash)
        prev_hash = record["hash"]
        expected_seq += 1
        checked += 1
    return VerificationResult(True, checked, last_hash=prev_hash)


def database_records(*, chunk_size: int = 5000) -> Iterator[dict[str, Any]]:
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        yield export_record(event)


def verify_chain(*, chunk_size: int = 5000) -> VerificationResult:
    result = walk(database_records(chunk_size=chunk_size))
    if not result.ok:
        return result
    head = AuditChainHead.objects.filter(pk=1).first()
    last_seq = head.last_seq if head else 0
    if last_seq != result.checked:
        return VerificationResult(
            False, result.checked, result.checked + 1, f"the chain head expects {last_seq} events"
        )
    if head and head.last_hash != result.last_hash:
        return VerificationResult(
            False, result.checked, result.checked, "the chain head's hash does not match the last event"
        )
    return result


def verify_export(path: Path) -> VerificationResult:
    def records() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    return walk(records())
