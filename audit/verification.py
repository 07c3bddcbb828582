"""Walk the chain and report the first event that does not hold."""

from __future__ import annotations

from dataclasses import dataclass

from audit.hashing import GENESIS_HASH, chain_hash, event_payload
from audit.models import AuditChainHead, AuditEvent


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str = ""


def verify_chain(*, chunk_size: int = 5000) -> VerificationResult:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            return VerificationResult(False, checked, expected_seq, f"event #{expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return VerificationResult(False, checked, event.seq, "prev_hash does not match the previous event's hash")
        payload = event_payload(
            seq=event.seq,
            created_at=event.created_at,
            actor_id=event.actor_id,
            actor_kind=event.actor_kind,
            actor_label=event.actor_label,
            action=event.action,
            object_type=event.object_type,
            object_id=event.object_id,
            before=event.before,
            after=event.after,
            reason=event.reason,
            request_id=event.request_id,
        )
        if chain_hash(prev_hash, payload) != event.hash:
            return VerificationResult(False, checked, event.seq, "content does not match its hash (altered)")
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    last_seq = head.last_seq if head else 0
    if last_seq != checked:
        return VerificationResult(False, checked, checked + 1, f"the chain head expects {last_seq} events")
    if head and head.last_hash != prev_hash:
        return VerificationResult(False, checked, checked, "the chain head's hash does not match the last event")
    return VerificationResult(True, checked)
