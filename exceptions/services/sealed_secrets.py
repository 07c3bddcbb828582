"""Key rotation for the secrets sealed at rest (foundation/encryption.py).

Every app that keeps sealed secrets registers a re-encryptor on
``foundation.encryption.reencryptors`` (approvals: the MFA seeds; webhooks:
the subscription secrets); this service runs them all in one transaction and
records one audit event, so a rotation either covers every secret or none.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import transaction

from audit.services import Actor, PendingEvent, record_events
from foundation import encryption

ACTION = "secrets.reencrypted"
OBJECT_TYPE = "foundation.secretskey"


def key_fingerprint(key: str) -> str:
    """Names a key in the audit log without revealing it (a digest of 256 random bits)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:16]


def reencrypt_secrets(*, actor: Actor) -> dict[str, int]:
    """Seal every TOTP seed and webhook secret again under EGRESS_SECRETS_KEY; how many of each.

    Values sealed under a key in EGRESS_SECRETS_KEY_RETIRED are opened with it; a value
    no configured key opens (or one in plain text) stops the whole run, changing nothing.
    """
    with transaction.atomic():
        counts = dict(encryption.reencryptors())
        record_events(
            [
                PendingEvent(
                    actor=actor,
                    action=ACTION,
                    object_type=OBJECT_TYPE,
                    object_id=key_fingerprint(settings.EGRESS_SECRETS_KEY),
                    after={
                        **counts,
                        "retired_keys": [key_fingerprint(key) for key in settings.EGRESS_SECRETS_KEY_RETIRED],
                    },
                    reason="Secrets sealed again under the current EGRESS_SECRETS_KEY",
                )
            ]
        )
    return counts
