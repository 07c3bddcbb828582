"""Webhook secrets sealed at rest: the column becomes text (a sealed value is longer than
the secret), the secrets stored in plain text are sealed, then the field seals and opens
every value itself. The one place plain text is accepted (foundation/encryption.py
``seal_legacy``); going back opens them again."""

from typing import Any

from django.db import migrations, models

import foundation.encryption
from foundation.encryption import decrypt, seal_legacy


def _rewrite(apps: Any, seal: Any) -> None:
    subscription = apps.get_model("webhooks", "WebhookSubscription")
    for row in subscription.objects.order_by("pk"):
        row.secret = seal(row.secret)
        row.save(update_fields=["secret"])


def seal(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, seal_legacy)


def unseal(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, decrypt)


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0001_initial")]

    operations = [
        migrations.AlterField(model_name="webhooksubscription", name="secret", field=models.TextField()),
        migrations.RunPython(seal, unseal),
        migrations.AlterField(
            model_name="webhooksubscription", name="secret", field=foundation.encryption.EncryptedTextField()
        ),
    ]
