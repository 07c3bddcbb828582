"""Walk the chain and report the first event that does not hold.

The same walk checks the database and an exported JSON-lines file, so an
auditor can verify an export offline with nothing but this code (or any
SHA-256 and canonical-JSON implementation).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from audit.hashing import GENESIS_HASH, chain_hash, event_payload
from audit.models import AuditChainHead, AuditEvent
from audit.sealing import AuditKeys, audit_keys, seal_problem

# Recorded by record_events when the chain head it was about to extend did not carry a valid
# seal (events removed and the head rolled back): writing on must not launder that.
HEAD_SEAL_INVALID_ACTION = "audit.head_seal_invalid"


class Anchor(Protocol):
    """A signed statement that the chain's event ``seq`` had ``head_hash`` (audit.checkpoints.Checkpoint)."""

    @property
    def seq(self) -> int: ...

    @property
    def head_hash(self) -> str: ...

    def describe(self) -> str: ...


PAYLOAD_FIELDS = (
    "seq", "created_at", "actor_id", "actor_kind", "actor_label", "action", "object_type", "object_id",
    "before", "after", "reason", "request_id",
)  # fmt: skip
# Hashed only when present (how a person acted), so events written before it existed still verify.
OPTIONAL_PAYLOAD_FIELDS = ("context",)


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str = ""
    last_hash: str = GENESIS_HASH
    # The checkpoint the chain contradicts, when that is what failed.
    checkpoint: str = ""
    # The highest checkpoint the chain agreed with (0: none).
    anchored_seq: int = 0
    notes: tuple[str, ...] = ()


def hashed_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The part of an exported record its hash covers."""
    payload = {name: record.get(name) for name in PAYLOAD_FIELDS}
    payload.update({name: record[name] for name in OPTIONAL_PAYLOAD_FIELDS if record.get(name)})
    return payload


def export_record(event: AuditEvent) -> dict[str, Any]:
    """One event as exported: the hashed payload plus its chain links."""
    payload = event_payload(**{name: getattr(event, name) for name in PAYLOAD_FIELDS + OPTIONAL_PAYLOAD_FIELDS})
    return {**payload, "prev_hash": event.prev_hash, "hash": event.hash}


def walk(
    records: Iterable[dict[str, Any]],
    *,
    start_seq: int = 1,
    start_hash: str = GENESIS_HASH,
    anchors: Sequence[Anchor] = (),
    keys: AuditKeys | None = None,
) -> VerificationResult:
    """Check each event against its predecessor, its seal (with ``keys``) and every anchor (checkpoint) on the way.

    Anchors are met in sequence order, so the one named is the first the chain
    contradicts. An anchor beyond the chain's end means events were removed
    from the tail (even if the chain head row was rewritten to match).
    """
    by_seq = {anchor.seq: anchor for anchor in anchors}
    expected_seq = start_seq
    prev_hash = start_hash
    checked = 0
    anchored = 0
    for record in records:
        seq = record.get("seq")
        if seq != expected_seq:
            return VerificationResult(
                False, checked, expected_seq, f"event #{expected_seq} is missing", prev_hash, anchored_seq=anchored
            )
        if record.get("prev_hash") != prev_hash:
            return VerificationResult(
                False,
                checked,
                seq,
                "prev_hash does not match the previous event's hash",
                prev_hash,
                anchored_seq=anchored,
            )
        if chain_hash(prev_hash, hashed_payload(record)) != record.get("hash"):
            return VerificationResult(
                False, checked, seq, "content does not match its hash (altered)", prev_hash, anchored_seq=anchored
            )
        if keys is not None:
            problem = _event_seal_problem(keys, record)
            if problem:
                return VerificationResult(False, checked, seq, problem, prev_hash, anchored_seq=anchored)
        anchor = by_seq.get(seq)
        if anchor is not None:
            if anchor.head_hash != record["hash"]:
                return VerificationResult(
                    False,
                    checked,
                    seq,
                    f"contradicts checkpoint {anchor.describe()}: it recorded head hash {anchor.head_hash[:16]}..., "
                    f"the chain has {record['hash'][:16]}... (history rewritten)",
                    prev_hash,
                    checkpoint=anchor.describe(),
                    anchored_seq=anchored,
                )
            anchored = seq
        prev_hash = record["hash"]
        expected_seq += 1
        checked += 1
    beyond = [anchor for anchor in anchors if anchor.seq >= expected_seq]
    if beyond:
        first = min(beyond, key=lambda anchor: anchor.seq)
        return VerificationResult(
            False,
            checked,
            expected_seq,
            f"the chain ends at #{expected_seq - 1} but checkpoint {first.describe()} recorded #{first.seq} "
            "(events removed from the tail)",
            prev_hash,
            checkpoint=first.describe(),
            anchored_seq=anchored,
        )
    return VerificationResult(True, checked, last_hash=prev_hash, anchored_seq=anchored)


def _event_seal_problem(keys: AuditKeys, record: dict[str, Any]) -> str:
    seq = int(record["seq"])
    problem = seal_problem(
        keys,
        head=False,
        seq=seq,
        digest=str(record["hash"]),
        seal=str(record.get("seal") or ""),
        key_id=str(record.get("seal_key_id") or ""),
    )
    if problem:
        return f"event #{seq} {problem}"
    if record.get("action") == HEAD_SEAL_INVALID_ACTION:
        before = record.get("before") or {}
        return (
            f"event #{seq} records that the chain head (#{before.get('last_seq')}) did not carry a valid seal when "
            f"the portal next wrote ({record.get('reason')}): events after it may have been removed"
        )
    return ""


RECORD_FIELDS = (*PAYLOAD_FIELDS, *OPTIONAL_PAYLOAD_FIELDS, "prev_hash", "hash")
# Not exported: a seal is checked with the audit key, which an offline auditor does not hold.
SEAL_FIELDS = ("seal", "seal_key_id")


def database_records(
    *, chunk_size: int = 5000, after_seq: int = 0, through_seq: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every event (after ``after_seq``, up to ``through_seq``) as exported plus its seal, in chain order.

    Plain tuples from a server-side cursor, not model instances: a million
    events stream in constant memory at a fraction of the cost.
    """
    events = AuditEvent.objects.filter(seq__gt=after_seq).order_by("seq")
    if through_seq is not None:
        events = events.filter(seq__lte=through_seq)
    for row in events.values_list(*RECORD_FIELDS, *SEAL_FIELDS).iterator(chunk_size=chunk_size):
        record = record_from_row(row[: len(RECORD_FIELDS)])
        record["seal"], record["seal_key_id"] = row[len(RECORD_FIELDS) :]
        yield record


def record_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``values_list(*RECORD_FIELDS)`` row as exported (what the hash covers, plus the links)."""
    record = dict(zip(RECORD_FIELDS, row, strict=True))
    record["created_at"] = record["created_at"].isoformat()
    return record


def verify_chain(
    *, chunk_size: int = 5000, checkpoints: Sequence[Anchor] = (), keys: AuditKeys | None = None
) -> VerificationResult:
    """The chain in the database: every hash, every seal, every checkpoint met, and the sealed head.

    ``keys`` default to the configured audit keys; without one this raises
    ``ImproperlyConfigured`` rather than pass a chain whose seals it cannot check.
    """
    keys = keys or audit_keys()
    result = walk(database_records(chunk_size=chunk_size), anchors=checkpoints, keys=keys)
    if not result.ok:
        return result
    head = AuditChainHead.objects.filter(pk=1).first()
    last_seq = head.last_seq if head else 0
    if last_seq != result.checked:
        return replace(
            result, ok=False, broken_seq=result.checked + 1, problem=f"the chain head expects {last_seq} events"
        )
    if head and head.last_hash != result.last_hash:
        return replace(
            result, ok=False, broken_seq=result.checked, problem="the chain head's hash does not match the last event"
        )
    if head and last_seq:
        problem = head_seal_problem(keys, head)
        if problem:
            return replace(
                result,
                ok=False,
                broken_seq=last_seq,
                problem=f"{problem} (the newest events removed and the head rolled back?)",
            )
    return result


def head_seal_problem(keys: AuditKeys, head: AuditChainHead) -> str:
    problem = seal_problem(
        keys, head=True, seq=head.last_seq, digest=head.last_hash, seal=head.seal, key_id=head.seal_key_id
    )
    return f"the chain head (#{head.last_seq}) {problem}" if problem else ""


EXPORT_TYPE = "egress-portal.audit-export"
CSV_HEADER_MARKER = "export"


# A spreadsheet runs a cell that starts with one of these as a formula; a reason
# typed by a requester must not. Such cells (and cells already starting with the
# quote) get a leading quote, which the verifier takes off again: reversible.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _csv_value(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def _csv_record(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {name: _csv_value(cell) for name, cell in row.items()}
    record["seq"] = int(row["seq"])
    record["actor_id"] = int(row["actor_id"]) if row["actor_id"] else None
    record["before"] = json.loads(record["before"]) if record["before"] else None
    record["after"] = json.loads(record["after"]) if record["after"] else None
    record["context"] = json.loads(record["context"]) if record.get("context") else {}
    return record


def read_export(path: Path) -> tuple[dict[str, Any] | None, Iterator[dict[str, Any]]]:
    """The export's header (None for an old, header-less export) and its event records, streamed."""
    handle = path.open(encoding="utf-8", newline="")
    first = handle.read(1)
    handle.seek(0)
    if first == "{":
        lines = (json.loads(line) for line in handle if line.strip())
        head = next(lines, None)
        if head is not None and head.get("type") == EXPORT_TYPE:
            return head, lines
        return None, itertools.chain([head] if head else [], lines)
    rows = csv.DictReader(handle)
    head_row = next(rows, None)
    if head_row is not None and head_row.get("seq") == CSV_HEADER_MARKER:
        return json.loads(head_row["after"]), (_csv_record(row) for row in rows)
    return None, (_csv_record(row) for row in itertools.chain([head_row] if head_row else [], rows))


def walk_filtered(records: Iterable[dict[str, Any]], *, anchor: Anchor | None) -> VerificationResult:
    """A filtered export is not a contiguous chain: each event must still match its own hash,
    consecutive events must link, and an event at the checkpoint must carry its head hash."""
    last_seq = 0
    last_hash = ""
    checked = 0
    for record in records:
        seq = record.get("seq")
        if not isinstance(seq, int) or seq <= last_seq:
            return VerificationResult(False, checked, last_seq + 1, "events are out of order or repeated")
        if seq == last_seq + 1 and record.get("prev_hash") != last_hash:
            return VerificationResult(False, checked, seq, "prev_hash does not match the previous event's hash")
        if chain_hash(str(record.get("prev_hash")), hashed_payload(record)) != record.get("hash"):
            return VerificationResult(False, checked, seq, "content does not match its hash (altered)")
        if anchor is not None and seq == anchor.seq and record["hash"] != anchor.head_hash:
            return VerificationResult(
                False, checked, seq, f"contradicts checkpoint {anchor.describe()}", checkpoint=anchor.describe()
            )
        last_seq, last_hash = seq, record["hash"]
        checked += 1
    return VerificationResult(True, checked, last_hash=last_hash)
