"""Start a real Celery worker as a child process (the test suite and the benchmarks use it)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parent.parent


def start_worker(
    *, hostname: str, env: Mapping[str, str], queues: Sequence[str] = ("default", "publish", "priority")
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "egress_portal", "worker", "--pool=solo", "--loglevel=warning",
        "--without-mingle", "--without-gossip", "-n", hostname, "-Q", ",".join(queues),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=dict(env))


def start_beat(*, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """`celery beat` with the database scheduler (the schedules seeded by the outbox migration)."""
    command = [sys.executable, "-m", "celery", "-A", "egress_portal", "beat", "--loglevel=warning"]
    return subprocess.Popen(command, cwd=ROOT, env=dict(env))


def wait_until_ready(app: Celery, process: subprocess.Popen[bytes], hostname: str, timeout: float = 60) -> None:
    """Return once the worker answers a ping; raise if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {process.returncode}")
        if app.control.ping(destination=[hostname], timeout=1.0):
            return
    raise RuntimeError(f"the Celery worker did not answer a ping within {timeout:.0f} s")


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
