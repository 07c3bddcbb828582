"""The approvals and proof jobs join the seeded schedules; activation runs through approvals.

Seeding is by name and never overwrites, so this only adds what an existing
database lacks. The old activate job is replaced by the approvals one, which
also moves go-lives out of freezes before activating.
"""

from typing import Any

from django.db import migrations

from foundation.outbox.schedules import seed


def add_schedules(apps: Any, schema_editor: Any) -> None:
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(name="activate-due-grants", task="exceptions.activate_due_grants").delete()
    seed(
        periodic_task,
        apps.get_model("django_celery_beat", "IntervalSchedule"),
        apps.get_model("django_celery_beat", "CrontabSchedule"),
    )


class Migration(migrations.Migration):
    dependencies = [("outbox", "0002_relay_and_schedules")]

    operations = [migrations.RunPython(add_schedules, migrations.RunPython.noop)]
