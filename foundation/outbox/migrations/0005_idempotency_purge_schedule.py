"""The API's idempotency records are purged hourly: the job joins the seeded schedules."""

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
    dependencies = [("outbox", "0004_provider_range_schedules")]

    operations = [migrations.RunPython(add_schedules, migrations.RunPython.noop)]
