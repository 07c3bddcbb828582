"""The nudge after a commit is a shortcut: it reaches the broker when it is up, and a broker
outage neither fails the change nor slows every later one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from foundation.outbox.services import RELAY_TASK, nudge_relay
from tests.outbox.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.redis
def test_nudge_queues_a_relay_run_on_the_queue_of_the_kind(settings: Any) -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("publish")
    nudge_relay("publish")
    queued = client.lrange("publish", 0, -1)
    client.delete("publish")
    assert len(queued) == 1 and RELAY_TASK.encode() in queued[0]


def test_a_broker_outage_pauses_nudging_instead_of_failing_the_change() -> None:
    script = (
        "import django, time; django.setup()\n"
        "from foundation.outbox import services\n"
        "services.nudge_relay('publish')\n"  # the broker is down: logged, not raised
        "print('paused' if services._nudges_paused_until > time.monotonic() else 'not paused')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "paused"
