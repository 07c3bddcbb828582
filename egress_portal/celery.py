"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import logging
import os
import re
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, task_failure, task_success

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "egress_portal.settings.local")

app = Celery("egress_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Ticks that run every few seconds whether or not there is work: their lines
# are dropped when they found nothing to do (three relay queues every 2 s
# otherwise fill the console of `make run` with a line a second).
QUIET_TASKS = frozenset({"outbox.relay"})
_NOTHING_DONE = re.compile(r"\{('\w+': 0(, )?)*\}")


class IdleTicks(logging.Filter):
    """Drop beat's "Sending due task", the worker's "received" and an idle "succeeded" for QUIET_TASKS."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "celery.beat":
            return not (isinstance(args, tuple) and len(args) == 2 and args[1] in QUIET_TASKS)
        if not isinstance(args, dict) or args.get("name") not in QUIET_TASKS:
            return True
        if record.name == "celery.worker.strategy":
            return False
        if record.name == "celery.app.trace" and "return_value" in args:
            return not _NOTHING_DONE.fullmatch(str(args["return_value"]))
        return True


@after_setup_logger.connect
def _quiet_idle_ticks(logger: logging.Logger | None = None, **kwargs: Any) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(IdleTicks())


@task_success.connect
def _job_succeeded(sender: Any = None, **kwargs: Any) -> None:
    from traffic.jobs import record_success

    record_success(sender=sender, **kwargs)


@task_failure.connect
def _job_failed(sender: Any = None, **kwargs: Any) -> None:
    from traffic.jobs import record_failure

    record_failure(sender=sender, **kwargs)
