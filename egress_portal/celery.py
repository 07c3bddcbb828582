"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_failure, task_success

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "egress_portal.settings.local")

app = Celery("egress_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_success.connect
def _job_succeeded(sender: Any = None, **kwargs: Any) -> None:
    from egress_portal.traffic.jobs import record_success

    record_success(sender=sender, **kwargs)


@task_failure.connect
def _job_failed(sender: Any = None, **kwargs: Any) -> None:
    from egress_portal.traffic.jobs import record_failure

    record_failure(sender=sender, **kwargs)
