"""Outbox handlers of the audit app (registered by dotted path in ``OUTBOX_HANDLERS``)."""

from __future__ import annotations

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import CheckpointRefused, write_checkpoint
from foundation.outbox.errors import DeliveryError
from foundation.outbox.models import OutboxMessage


def deliver_checkpoint(message: OutboxMessage) -> None:
    """An ``audit.checkpoint`` row: sign the chain's head into the policy repository.

    An unreachable repository is transient (retried with backoff). A chain that no longer
    extends the last checkpoint is permanent: the row parks, visible on the operations page,
    because signing it would bless a rewritten table and only a person can decide what happened.
    """
    try:
        write_checkpoint()
    except CheckpointRepoError as exc:
        raise DeliveryError(str(exc)) from exc
    except CheckpointRefused as exc:
        raise DeliveryError(f"checkpoint refused: {exc}", permanent=True) from exc
