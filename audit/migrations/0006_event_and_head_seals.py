"""Seal columns on events and the chain head (audit/sealing.py).

Events written before this migration stay unsealed (and fail verify_audit, naming
them) until ``manage.py seal_audit`` seals them: that command checks the chain
first and needs the audit key, which a migration should not need.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_action_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditchainhead",
            name="seal",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="seal_key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seal",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seal_key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
    ]
