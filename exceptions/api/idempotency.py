"""``Idempotency-Key`` on POST: a retried call gets the first call's answer, not a second effect.

The key is claimed (a row with no outcome yet) before the view runs and the outcome
stored after it; a successful (2xx) outcome is replayed for the same token or person
and key within ``EGRESS_IDEMPOTENCY_HOURS``. A failed call releases its key, so a
corrected retry runs. The same key with another method, path or body is a 409.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from exceptions.models import IdempotencyRecord, IntegrationToken
from foundation.problems import Conflict

HEADER = "Idempotency-Key"
# A claim with no outcome after this long belongs to a call that died; the key may be used again.
ABANDONED_AFTER = timedelta(seconds=60)
BUSY = f"A request with this {HEADER} is still being processed; retry shortly."


@dataclass(frozen=True)
class Claim:
    record_id: int


class Replay(Exception):
    """The stored answer to an earlier call with this key and body."""

    def __init__(self, response: Response) -> None:
        super().__init__("idempotent replay")
        self.response = response


def owner_of(request: Request) -> str:
    token = request.auth
    if isinstance(token, IntegrationToken):
        return f"token:{token.pk}"
    return f"user:{request.user.pk}"


def fingerprint(request: Request) -> str:
    data = request.data
    body = json.dumps(data.dict() if hasattr(data, "dict") else data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise serializers.ValidationError(
            {HEADER: ["Use 1 to 255 printable ASCII characters, for example a UUID per logical operation."]}
        )
    return key


def _window() -> timedelta:
    return timedelta(hours=settings.EGRESS_IDEMPOTENCY_HOURS)


def begin(request: Request, *, now: datetime | None = None) -> Claim | None:
    """Claim the call's key, or raise Replay (same body, answered) or Conflict (other body, or still running)."""
    key = _key(request)
    if key is None:
        return None
    now = now or timezone.now()
    owner, digest = owner_of(request), fingerprint(request)
    claimed = _claim_new(owner, key, digest, now)
    if claimed is not None:
        return claimed
    for _ in range(2):  # a concurrent first claim makes get_or_create fail once; the second try reads it
        try:
            with transaction.atomic():
                record, created = IdempotencyRecord.objects.select_for_update().get_or_create(
                    owner=owner, key=key, defaults={"fingerprint": digest, "created_at": now}
                )
                if created:
                    return Claim(record.pk)
                expired = record.created_at < now - _window()
                abandoned = record.status_code is None and record.created_at < now - ABANDONED_AFTER
                if expired or abandoned:
                    record.fingerprint, record.status_code, record.body = digest, None, None
                    record.location, record.created_at = "", now
                    record.save(update_fields=["fingerprint", "status_code", "body", "location", "created_at"])
                    return Claim(record.pk)
                break
        except IntegrityError:
            continue
    else:  # pragma: no cover - two lost races in a row
        raise Conflict(
            "A request with this Idempotency-Key is being processed; retry shortly.", code="idempotency_busy"
        )
    if record.fingerprint != digest:
        raise Conflict(
            f"This {HEADER} was already used with a different method, path or body; use a new key for a new operation.",
            code="idempotency_conflict",
        )
    if record.status_code is None:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly.", code="idempotency_busy"
        )
    headers = {"Idempotent-Replayed": "true"}
    if record.location:
        headers["Location"] = record.location
    raise Replay(Response(record.body, status=record.status_code, headers=headers))


def _claim_new(owner: str, key: str, digest: str, now: datetime) -> Claim | None:
    """Claim a key never used before in one statement; None when a row for it exists (then read and judged)."""
    connection = connections[router.db_for_write(IdempotencyRecord)]
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (owner, key, fingerprint, status_code, body, location, created_at) "  # noqa: S608 - the model's table
            "VALUES (%s, %s, %s, NULL, NULL, '', %s) ON CONFLICT (owner, key) DO NOTHING RETURNING id",
            [owner, key, digest, connection.ops.adapt_datetimefield_value(now)],
        )
        row = cursor.fetchone()
    return Claim(row[0]) if row else None


def finish(claim: Claim, response: Response) -> None:
    """Store a success for replay; release the key after a failure."""
    if 200 <= response.status_code < 300:
        body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
        IdempotencyRecord.objects.filter(pk=claim.record_id).update(
            status_code=response.status_code, body=body, location=response.get("Location", "")
        )
    else:
        IdempotencyRecord.objects.filter(pk=claim.record_id, status_code__isnull=True).delete()


def purge_expired(*, now: datetime | None = None) -> int:
    """Delete outcomes older than the replay window (not audited: a cache of answers, not domain state)."""
    cutoff = (now or timezone.now()) - _window()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
