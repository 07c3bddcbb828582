"""Real parts for the outbox tests: a loopback SMTP server, a throwaway Redis, a worker and beat."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from egress_portal.worker_process import start_beat, start_worker, stop_worker, wait_until_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpHandler:
    """An aiosmtpd handler that answers 451 a set number of times and can stall at RCPT."""

    fail_next: int = 0
    stall_next_rcpt: float = 0.0
    rcpt_started: threading.Event = field(default_factory=threading.Event)
    received: list[Any] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.stall_next_rcpt:
            stall, self.stall_next_rcpt = self.stall_next_rcpt, 0.0
            self.rcpt_started.set()
            await asyncio.sleep(stall)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_next:
            self.fail_next -= 1
            return "451 4.3.0 Mail server temporarily rejected message"
        self.received.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.received]


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpHandler]:
    """aiosmtpd on a loopback port; Django's SMTP backend (in this process) points at it."""
    from aiosmtpd.controller import Controller

    handler = SmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", controller.port, 30
    try:
        yield handler
    finally:
        controller.stop()


class ThrowawayRedis:
    """A redis-server of our own on a spare loopback port, so a test can stop and restart it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*command, "--dir", str(self.tmp)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the throwaway redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires redis-server for the broker-outage tests", pytrace=False)
        pytest.skip("redis-server is not installed")
    redis = ThrowawayRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@dataclass
class CeleryStack:
    """A worker and beat over the throwaway Redis, on the test database."""

    env: dict[str, str]
    broker: str
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        hostname = f"outbox-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.worker = start_worker(hostname=hostname, env=self.env)
        probe = Celery("probe", broker=self.broker, set_as_current=False)
        try:
            wait_until_ready(probe, self.worker, hostname)
        finally:
            probe.close()

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()  # SIGKILL: no warm shutdown, no chance to finish the delivery
        self.worker.wait(timeout=10)
        self.worker = None

    def start_beat(self) -> None:
        self.beat = start_beat(env=self.env)

    def stop(self) -> None:
        for process in (self.worker, self.beat):
            if process is not None:
                stop_worker(process)


@pytest.fixture
def celery_stack(
    transactional_db: Any, throwaway_redis: ThrowawayRedis, smtp_server: SmtpHandler, settings: Any, policy_repo: Path
) -> Iterator[CeleryStack]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from foundation.outbox.schedules import seed

    seed(PeriodicTask, IntervalSchedule, CrontabSchedule)  # a flushed test database lost the migration's rows
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": throwaway_redis.url,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(settings.EMAIL_PORT),
        "POLICY_REPO_URL": settings.POLICY_REPO_URL,
        "POLICY_WORK_DIR": str(settings.POLICY_WORK_DIR),
        "EGRESS_AUTO_PUBLISH": "true",
        "BUNDLE_PUBLISH_DELAY_SECONDS": "1",
        "OUTBOX_LEASE_SECONDS": "8",
    }
    stack = CeleryStack(env=env, broker=throwaway_redis.url)
    try:
        yield stack
    finally:
        stack.stop()


def wait_for(condition: Any, *, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(message)
