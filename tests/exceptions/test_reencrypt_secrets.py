"""Key rotation: `manage.py reencrypt_secrets`, and the migrations that seal what was stored in plain text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEvent
from audit.verification import verify_chain
from exceptions.services.sealed_secrets import ACTION, key_fingerprint
from foundation.encryption import new_key
from tests.approvals.conftest import enrol_mfa, totp_code
from tests.factories import UserFactory
from webhooks.models import WebhookSubscription
from webhooks.services import create_subscription

OLD_KEY, NEW_KEY, LOST_KEY = new_key(), new_key(), new_key()
WEBHOOK_SECRET = "whsec_the-receiver-knows-this-one"


def raw(sql: str, *params: Any) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def stored_values() -> list[str]:
    return [str(v) for v in raw("SELECT data FROM mfa_authenticator ORDER BY id")] + [
        str(v) for v in raw("SELECT secret FROM webhooks_webhooksubscription ORDER BY id")
    ]


@pytest.fixture
def sealed_under_old_key(settings: Any, requester: Any) -> dict[str, Any]:
    settings.EGRESS_SECRETS_KEY, settings.EGRESS_SECRETS_KEY_RETIRED = OLD_KEY, []
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    secret = enrol_mfa(requester)
    codes = RecoveryCodes.activate(requester).get_unused_codes()
    create_subscription(
        actor=admin, url="https://hooks.example.com/egress", events=["grant.revoked"], secret=WEBHOOK_SECRET
    )
    return {"totp": secret, "codes": codes, "user": requester}


def still_work(enrolled: dict[str, Any]) -> None:
    user = enrolled["user"]
    assert TOTP(Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)).validate_code(
        totp_code(enrolled["totp"])
    )
    recovery = RecoveryCodes(Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES))
    assert recovery.get_unused_codes() == enrolled["codes"]
    assert WebhookSubscription.objects.get().secret == WEBHOOK_SECRET


@pytest.mark.django_db
def test_reencrypt_seals_every_secret_under_the_new_key_with_one_audit_event(
    settings: Any, sealed_under_old_key: dict[str, Any]
) -> None:
    before = stored_values()
    settings.EGRESS_SECRETS_KEY, settings.EGRESS_SECRETS_KEY_RETIRED = NEW_KEY, [OLD_KEY]
    events = AuditEvent.objects.count()
    call_command("reencrypt_secrets")

    assert all(old != new for old, new in zip(before, stored_values(), strict=True))
    [event] = AuditEvent.objects.filter(action=ACTION)
    assert AuditEvent.objects.count() == events + 1
    assert event.actor_label == "manage.py reencrypt_secrets" and event.object_id == key_fingerprint(NEW_KEY)
    assert event.after["mfa_authenticators"] == 2 and event.after["webhook_subscriptions"] == 1
    assert event.after["retired_keys"] == [key_fingerprint(OLD_KEY)]
    assert verify_chain().ok
    # The old key can go now: everything opens with the new one alone.
    settings.EGRESS_SECRETS_KEY_RETIRED = []
    still_work(sealed_under_old_key)


@pytest.mark.django_db
def test_reencrypt_changes_nothing_when_a_secret_opens_with_no_configured_key(
    settings: Any, sealed_under_old_key: dict[str, Any]
) -> None:
    before = stored_values()
    events = AuditEvent.objects.count()
    settings.EGRESS_SECRETS_KEY, settings.EGRESS_SECRETS_KEY_RETIRED = NEW_KEY, [LOST_KEY]
    with pytest.raises(CommandError, match=r"Nothing was changed.*EGRESS_SECRETS_KEY_RETIRED"):
        call_command("reencrypt_secrets")
    assert stored_values() == before and AuditEvent.objects.count() == events
    settings.EGRESS_SECRETS_KEY, settings.EGRESS_SECRETS_KEY_RETIRED = OLD_KEY, []
    still_work(sealed_under_old_key)


@pytest.mark.django_db(transaction=True)
def test_the_migrations_seal_seeds_and_secrets_stored_in_plain_text(requester: Any) -> None:
    before_sealing = [("approvals", "0003_breakglass"), ("webhooks", "0001_initial")]
    executor = MigrationExecutor(connection)
    executor.migrate(before_sealing)
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    stamp = "2026-01-01 00:00:00+00:00"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mfa_authenticator (user_id, type, data, created_at) VALUES (%s, 'totp', %s, %s)",
            [requester.pk, json.dumps({"secret": secret}), stamp],
        )
        cursor.execute(
            "INSERT INTO webhooks_webhooksubscription (url, events, secret, active, description, created_at,"
            " updated_at) VALUES ('https://hooks.example.com/e', '[]', %s, true, '', %s, %s)",
            [WEBHOOK_SECRET, stamp, stamp],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert secret not in str(stored_values()) and WEBHOOK_SECRET not in str(stored_values())
    totp = Authenticator.objects.get(user=requester, type=Authenticator.Type.TOTP)
    assert TOTP(totp).validate_code(totp_code(secret))
    assert WebhookSubscription.objects.get().secret == WEBHOOK_SECRET
    # Going back opens them again, for the release before sealing.
    executor = MigrationExecutor(connection)
    executor.migrate(before_sealing)
    assert secret in str(stored_values()) and WEBHOOK_SECRET in str(stored_values())
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
