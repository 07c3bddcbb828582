"""Jobs over many grants: activate the due scheduled ones, expire the due open ones.

The moves themselves are ``lifecycle.activate_due`` and ``lifecycle.expire_due``:
keyset batches claimed with ``FOR UPDATE SKIP LOCKED``, so two runs at once split the work.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import SYSTEM
from exceptions import hooks
from exceptions.choices import RequestStatus
from exceptions.services import lifecycle
from exceptions.services.requests import close_finished_requests


def activate_due_grants(*, now: datetime | None = None, batch_size: int = 2000) -> int:
    """Scheduled grants whose start has come become active (and so do their requests).

    Grants of an environment under a change freeze wait: a freeze blocks going
    live (approvals.services.activate_due_requests moves them past it).
    """
    now = now or timezone.now()
    frozen = hooks.approvals.get().frozen_environments(now)
    return lifecycle.activate_due(now=now, batch_size=batch_size, skip_environments=frozen)


def expire_due_grants(*, now: datetime | None = None, batch_size: int = 2000) -> int:
    """Expire every open grant whose time is up; batched, idempotent, safe to run twice at once."""
    now = now or timezone.now()
    expired = lifecycle.expire_due(now=now, batch_size=batch_size)
    # A concurrent run may have closed the last grants of a request we both
    # saw as still open; this sweep closes such requests.
    with transaction.atomic():
        close_finished_requests(None, target=RequestStatus.EXPIRED, actor=SYSTEM, now=now)
    return expired
