"""`make run`'s console: relay ticks that found nothing to deliver leave no lines, real work does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Celery sets up its logging as a worker and beat do (the after_setup_logger signal
# fires), then logs through Celery's own loggers with Celery's own messages.
SCRIPT = """
import django
django.setup()
from celery.app import trace
from celery.utils.log import get_logger
from egress_portal.celery import app

app.log.setup(loglevel="INFO", redirect_stdouts=False)
beat = get_logger("celery.beat")
received = get_logger("celery.worker.strategy")
beat.info("Scheduler: Sending due task %s (%s)", "outbox-relay-publish", "outbox.relay")
beat.info("Scheduler: Sending due task %s (%s)", "expire-grants", "exceptions.expire_due_grants")
for name, value in [
    ("outbox.relay", "{'delivered': 0, 'retried': 0, 'parked': 0}"),
    ("outbox.relay", "{'delivered': 2, 'retried': 0, 'parked': 0}"),
    ("exceptions.expire_due_grants", "0"),
]:
    context = {"id": "t-" + name + value, "name": name, "args": "()", "kwargs": "{}", "eta": None}
    received.info(trace.LOG_RECEIVED, context)
    trace.info(trace.LOG_SUCCESS, {**context, "return_value": value, "runtime": 0.01})
"""


def test_idle_relay_ticks_are_quiet_and_everything_else_is_logged() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    lines = (result.stdout + result.stderr).splitlines()
    relay = [line for line in lines if "outbox.relay" in line or "outbox-relay" in line]
    # Only the tick that delivered something is left: no "sending due", no "received", no idle success.
    assert len(relay) == 1, lines
    assert "succeeded" in relay[0] and "'delivered': 2" in relay[0]
    others = [line for line in lines if "expire" in line]
    assert any("Sending due task expire-grants" in line for line in others), lines
    assert any("received" in line for line in others), lines
    assert any("succeeded" in line for line in others), lines
