"""Canonical JSON and the chain hash; pure, shared by writers and the verifier."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

GENESIS_HASH = "0" * 64


def to_jsonable(value: Any) -> Any:
    """Turn service snapshots into plain JSON values (what the JSONField stores)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def canonical_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_payload(
    *,
    seq: int,
    created_at: datetime,
    actor_id: int | None,
    actor_kind: str,
    actor_label: str,
    action: str,
    object_type: str,
    object_id: str,
    before: Any,
    after: Any,
    reason: str,
    request_id: str,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The hashed fields; ``context`` (how the actor authenticated) only when there is one, so
    events written before it existed keep their hashes."""
    payload = {
        "seq": seq,
        "created_at": created_at.isoformat(),
        "actor_id": actor_id,
        "actor_kind": actor_kind,
        "actor_label": actor_label,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "before": before,
        "after": after,
        "reason": reason,
        "request_id": request_id,
    }
    if context:
        payload["context"] = context
    return payload


def chain_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(payload))
    return digest.hexdigest()
