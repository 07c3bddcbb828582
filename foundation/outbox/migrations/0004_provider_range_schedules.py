"""Issue 11: the provider-range syncs join the seeded schedules (by name; never overwrites)."""

from typing import Any

from django.db import migrations

from foundation.outbox.schedules import seed


def add_schedules(apps: Any, schema_editor: Any) -> None:
    seed(
        apps.get_model("django_celery_beat", "PeriodicTask"),
        apps.get_model("django_celery_beat", "IntervalSchedule"),
        apps.get_model("django_celery_beat", "CrontabSchedule"),
    )


class Migration(migrations.Migration):
    dependencies = [("outbox", "0003_approval_and_proof_schedules")]

    operations = [migrations.RunPython(add_schedules, migrations.RunPython.noop)]
