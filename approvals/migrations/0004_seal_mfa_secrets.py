"""Seal the TOTP and recovery-code seeds stored in plain text before encryption at rest.

The one place plain text is accepted (foundation/encryption.py ``seal_legacy``):
after this migration a seed that is not sealed is an error, never read as is.
Going back opens them again, so an older release still reads its seeds.
"""

from typing import Any

from django.db import migrations

from approvals.mfa import seal_authenticator_data
from foundation.encryption import decrypt, seal_legacy


def _rewrite(apps: Any, seal: Any) -> None:
    authenticator = apps.get_model("mfa", "Authenticator")
    for row in authenticator.objects.filter(type__in=["totp", "recovery_codes"]).order_by("pk"):
        row.data = seal_authenticator_data(row.type, row.data, seal)
        row.save(update_fields=["data"])


def seal(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, seal_legacy)


def unseal(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_breakglass"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(seal, unseal)]
