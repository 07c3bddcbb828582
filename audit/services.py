"""The only writer of audit events.

Callers run inside the transaction of the state change they record; the
chain head row is locked for the rest of that transaction, so events are
numbered and chained in commit order and two writers can never fork the chain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from audit.hashing import GENESIS_HASH, chain_hash, event_payload, to_jsonable
from audit.models import ActorKind, AuditChainHead, AuditEvent
from audit.sealing import AuditKeys, audit_keys, event_seal, head_seal, seal_problem
from audit.verification import HEAD_SEAL_INVALID_ACTION, Anchor, database_records, head_seal_problem, walk
from foundation.actors import Actor as RequestActor
from foundation.context import current_request_id


@dataclass(frozen=True)
class SystemActor:
    """A scheduled job or management command acting on its own."""

    label: str = "system"


SYSTEM = SystemActor()

Actor = RequestActor | AbstractBaseUser | AnonymousUser | SystemActor


@dataclass
class PendingEvent:
    actor: Actor
    action: str
    object_type: str
    object_id: str
    before: Any = None
    after: Any = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def object_type_of(obj: models.Model) -> str:
    return f"{obj._meta.app_label}.{obj._meta.model_name}"


def _actor_fields(actor: Actor) -> tuple[int | None, str, str, dict[str, Any]]:
    """The actor columns of an event, and its context (how they authenticated, break-glass)."""
    if isinstance(actor, SystemActor):
        return None, ActorKind.SYSTEM, actor.label, {}
    context: dict[str, Any] = actor.audit_context() if isinstance(actor, RequestActor) else {}
    user = actor.user if isinstance(actor, RequestActor) else actor
    if isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise ValueError("An anonymous user cannot change state; log in first.")
    if isinstance(actor, RequestActor) and actor.is_token:
        return int(user.pk), ActorKind.TOKEN, actor.label, context
    return int(user.pk), ActorKind.USER, user.get_username(), context


def _lock_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:  # one query on every write after the first
        return head
    AuditChainHead.objects.get_or_create(pk=1)
    return AuditChainHead.objects.select_for_update().get(pk=1)


def _unsealed_head_event(keys: AuditKeys, head: AuditChainHead) -> list[PendingEvent]:
    """An event saying so, when the head about to be extended does not carry a valid seal.

    Only the key holder writes valid head seals; extending a rolled-back head would seal
    the rollback. A chain older than seals (head and newest event both unsealed) is not
    a rollback. A head sealed with a key the portal does not know is a configuration
    error, not evidence: refused, so a wrong key never marks the log for good.
    """
    if head.last_seq == 0 and not head.seal:
        return []
    if not head.seal and AuditEvent.objects.filter(seq=head.last_seq, seal="").exists():
        return []
    problem = head_seal_problem(keys, head)
    if not problem:
        return []
    if head.seal and head.seal_key_id not in keys.by_id:
        raise ImproperlyConfigured(
            f"The audit chain head is sealed with audit key {head.seal_key_id!r}, which is neither EGRESS_AUDIT_KEY "
            f"({keys.current_id!r}) nor listed in EGRESS_AUDIT_KEY_RETIRED; no event can be recorded."
        )
    return [
        PendingEvent(
            actor=SYSTEM,
            action=HEAD_SEAL_INVALID_ACTION,
            object_type=object_type_of(head),
            object_id=str(head.pk),
            before={"last_seq": head.last_seq, "last_hash": head.last_hash, "seal_key_id": head.seal_key_id},
            reason=problem,
        )
    ]


# Above this many events at once, PostgreSQL gets them through COPY: bulk jobs
# (expiring 100,000 grants) would otherwise spend most of their time in INSERT.
COPY_THRESHOLD = 200
_COLUMNS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_kind",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "reason",
    "request_id",
    "context",
    "prev_hash",
    "hash",
    "seal",
    "seal_key_id",
)


def _insert(rows: list[dict[str, Any]]) -> None:
    connection = transaction.get_connection()
    if connection.vendor == "postgresql" and len(rows) >= COPY_THRESHOLD:
        table = AuditEvent._meta.db_table
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(
                        [
                            json.dumps(row[c]) if c in {"before", "after", "context"} and row[c] is not None else row[c]
                            for c in _COLUMNS
                        ]
                    )
        return
    AuditEvent.objects.bulk_create([AuditEvent(**row) for row in rows], batch_size=2000)


def record_events(events: Sequence[PendingEvent], *, now: datetime | None = None) -> int:
    """Append several events in one go (bulk jobs); same rules as record_event."""
    if not events:
        return 0
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Audit events must be recorded inside the transaction of the change they describe.")
    keys = audit_keys()  # before the lock: a missing key fails before anything waits on the head
    head = _lock_head()
    events = [*_unsealed_head_event(keys, head), *events]
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    request_id = current_request_id()
    prev_hash = head.last_hash or GENESIS_HASH
    seq = head.last_seq
    rows: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        actor_id, actor_kind, actor_label, context = _actor_fields(event.actor)
        payload = event_payload(
            seq=seq,
            created_at=created_at,
            actor_id=actor_id,
            actor_kind=str(actor_kind),
            actor_label=actor_label,
            action=event.action,
            object_type=event.object_type,
            object_id=str(event.object_id),
            before=to_jsonable(event.before),
            after=to_jsonable(event.after),
            reason=event.reason,
            request_id=request_id,
            context=context,
        )
        digest = chain_hash(prev_hash, payload)
        rows.append(
            {
                **payload,
                "created_at": created_at,
                "context": context,
                "prev_hash": prev_hash,
                "hash": digest,
                "seal": event_seal(keys, seq, digest),
                "seal_key_id": keys.current_id,
            }
        )
        prev_hash = digest
    _insert(rows)
    AuditChainHead.objects.filter(pk=1).update(
        last_seq=seq, last_hash=prev_hash, seal=head_seal(keys, seq, prev_hash), seal_key_id=keys.current_id
    )
    return len(rows)


def record_event(
    *,
    actor: Actor,
    action: str,
    obj: models.Model,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> None:
    """Record one state change of ``obj``; call inside the change's transaction."""
    record_events(
        [
            PendingEvent(
                actor=actor,
                action=action,
                object_type=object_type_of(obj),
                object_id=str(obj.pk),
                before=before,
                after=after,
                reason=reason,
            )
        ]
    )


HISTORY_SEALED_ACTION = "audit.history_sealed"


class SealRefused(Exception):
    """The chain does not hold; sealing it now would vouch for whatever was done to it."""


def seal_history(*, actor: Actor = SYSTEM, checkpoints: Sequence[Anchor] = (), vouch_unanchored: bool = False) -> int:
    """Seal the events written before seals existed, and the chain head; returns how many were sealed.

    Runs once after the upgrade that added seals, as the database owner (the runtime role may
    not update events; on PostgreSQL the trigger lets an UPDATE through only when it fills an
    empty seal). It first checks every hash and link, the given checkpoints and every seal
    already written, and that the unsealed events are the oldest ones: an unsealed event after
    a sealed one is a seal someone removed, and is refused, not resealed. The head is locked
    throughout, so no event is recorded meanwhile.

    Only events a checkpoint in the policy repository covers are sealed on the chain's word:
    someone with the database could strip every seal, rewrite the newest events and
    recompute the chain, and sealing would launder the forgery. Unsealed events after the
    newest checkpoint need ``vouch_unanchored``, a person's explicit word, recorded in the
    event this writes.
    """
    keys = audit_keys()
    with transaction.atomic():
        head = _lock_head()
        result = walk(database_records(), anchors=checkpoints)
        if not result.ok:
            raise SealRefused(f"audit chain broken at #{result.broken_seq}: {result.problem}")
        if result.checked != head.last_seq or result.last_hash != head.last_hash:
            raise SealRefused(f"the chain head (#{head.last_seq}) does not match the events")
        pending: list[tuple[int, int, str]] = []
        first_sealed = 0
        rows = AuditEvent.objects.order_by("seq").values_list("pk", "seq", "hash", "seal", "seal_key_id")
        for pk, seq, digest, seal, key_id in rows.iterator(chunk_size=5000):
            if not seal and first_sealed:
                raise SealRefused(
                    f"event #{seq} has no seal but event #{first_sealed} before it has one: a seal was removed"
                )
            if not seal:
                pending.append((pk, seq, digest))
                continue
            first_sealed = first_sealed or seq
            problem = seal_problem(keys, head=False, seq=seq, digest=digest, seal=seal, key_id=key_id)
            if problem:
                raise SealRefused(f"event #{seq} {problem}")
        if head.seal and (problem := head_seal_problem(keys, head)):
            raise SealRefused(problem)
        sealed_before = AuditEvent.objects.filter(action=HISTORY_SEALED_ACTION).values_list("seq", flat=True).first()
        if pending and sealed_before:
            # Sealing history happens once; unsealed events after that are seals someone removed.
            raise SealRefused(
                f"the history was sealed already (event #{sealed_before}), yet {len(pending)} events have no seal"
            )
        unanchored = [seq for _, seq, _ in pending if seq > result.anchored_seq]
        if unanchored and not vouch_unanchored:
            raise SealRefused(
                f"events #{unanchored[0]} to #{unanchored[-1]} have no seal and come after the newest checkpoint "
                f"(#{result.anchored_seq}): nothing outside the database vouches for them, so sealing them could "
                "seal a rewrite. Write a checkpoint with the release before seals, or pass --vouch-unanchored "
                "after checking those events yourself"
            )
        for start in range(0, len(pending), 1000):
            chunk = pending[start : start + 1000]
            AuditEvent.objects.bulk_update(
                [
                    AuditEvent(pk=pk, seal=event_seal(keys, seq, digest), seal_key_id=keys.current_id)
                    for pk, seq, digest in chunk
                ],
                ["seal", "seal_key_id"],
            )
        if not head.seal and head.last_seq:
            AuditChainHead.objects.filter(pk=1).update(
                seal=head_seal(keys, head.last_seq, head.last_hash), seal_key_id=keys.current_id
            )
        if pending:
            record_event(
                actor=actor,
                action=HISTORY_SEALED_ACTION,
                obj=head,
                after={
                    "sealed": len(pending),
                    "first_seq": pending[0][1],
                    "last_seq": pending[-1][1],
                    "anchored_seq": result.anchored_seq,
                    "vouched_unanchored": [unanchored[0], unanchored[-1]] if unanchored else None,
                    "key_id": keys.current_id,
                },
            )
    return len(pending)
