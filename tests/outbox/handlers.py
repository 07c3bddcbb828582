"""Handlers the relay tests register in OUTBOX_HANDLERS: real functions, failing on purpose."""

from __future__ import annotations

from foundation.outbox.errors import DeliveryError
from foundation.outbox.models import OutboxMessage

DELIVERED: list[str] = []


def record(message: OutboxMessage) -> None:
    DELIVERED.append(message.idempotency_key)


def unavailable(message: OutboxMessage) -> None:
    raise DeliveryError("remote answered 503")


def refused(message: OutboxMessage) -> None:
    raise DeliveryError("remote answered 400: payload rejected", permanent=True)


def crashes(message: OutboxMessage) -> None:
    raise KeyError("a bug in the handler")
