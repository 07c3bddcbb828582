"""Long polling for the OPA bundle endpoint: wait, bounded, for the served revision to move.

A publish moves the one ``ServedBundle`` row (``exceptions/services/artifacts.py``).
One watcher thread per process, running only while someone waits, learns of it
and wakes every waiting request at once. On PostgreSQL it ``LISTEN``s on the
channel the publish ``NOTIFY``s in the transaction that moves the row, and
re-reads the row every ``OPA_LONG_POLL_RECHECK_SECONDS`` in case a notification
was lost with a connection; elsewhere (SQLite) it re-reads the row every
``OPA_LONG_POLL_INTERVAL_SECONDS``. Either way it reads one primary-key row,
never a grant. The number of waiting requests per process is capped: a request
over the cap gets the normal (immediate) answer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection

from exceptions.selectors import served_bundle
from exceptions.services.artifacts import SERVED_CHANNEL

logger = logging.getLogger(__name__)

# The longest the watcher sleeps between looks at whether anyone still waits.
_IDLE_CHECK_SECONDS = 1.0


def _listener() -> psycopg.Connection[Any] | None:
    """A connection of its own LISTENing on the publish's channel; None without PostgreSQL."""
    if connection.vendor != "postgresql":
        return None
    try:
        listener = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        listener.execute(f"LISTEN {SERVED_CHANNEL}")
    except psycopg.Error:
        logger.exception("bundle watch: LISTEN failed; re-reading the served revision instead")
        return None
    return listener


class RevisionWatch:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._revision: str | None = None
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(max(settings.OPA_LONG_POLL_MAX_WAITERS, 1))
        self._capacity = settings.OPA_LONG_POLL_MAX_WAITERS

    def wait(self, *, known: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds while the revision is still ``known``.

        False (at once) when the process already has its cap of waiting requests.
        """
        if self._capacity <= 0 or not self._slots.acquire(blocking=False):
            return False
        try:
            deadline = time.monotonic() + timeout
            with self._changed:
                self._waiting += 1
                self._revision = known if self._revision is None else self._revision
                if self._thread is None:
                    self._thread = threading.Thread(target=self._watch, name="opa-bundle-watch", daemon=True)
                    self._thread.start()
                try:
                    while self._revision == known and (remaining := deadline - time.monotonic()) > 0:
                        self._changed.wait(remaining)
                finally:
                    self._waiting -= 1
            return True
        finally:
            self._slots.release()

    def _seen(self, revision: str | None) -> None:
        with self._changed:
            if revision is not None and revision != self._revision:
                self._revision = revision
                self._changed.notify_all()

    def _watch(self) -> None:
        listener = _listener()
        recheck = settings.OPA_LONG_POLL_RECHECK_SECONDS if listener else settings.OPA_LONG_POLL_INTERVAL_SECONDS
        next_read = 0.0  # read the row once LISTEN is in place: a move just before it is not missed
        try:
            while True:
                with self._changed:
                    if self._waiting == 0:
                        self._thread = None
                        self._revision = None
                        return
                if time.monotonic() >= next_read:
                    try:
                        served = served_bundle()
                        self._seen(served[0] if served else None)
                    except Exception:  # a database hiccup must not strand the waiting requests
                        logger.exception("bundle revision check failed")
                        connection.close()
                    next_read = time.monotonic() + recheck
                pause = max(min(next_read - time.monotonic(), _IDLE_CHECK_SECONDS), 0.0)
                if listener is None:
                    time.sleep(pause)
                    continue
                try:
                    for notice in listener.notifies(timeout=pause, stop_after=1):
                        self._seen(notice.payload)
                except psycopg.Error:
                    logger.exception("bundle watch: the LISTEN connection failed; listening again")
                    listener.close()
                    listener = _listener()
                    next_read = 0.0
                    if listener is None:
                        recheck = settings.OPA_LONG_POLL_INTERVAL_SECONDS
        finally:
            if listener is not None:
                listener.close()
            connection.close()


_watch: RevisionWatch | None = None
_created = threading.Lock()


def revision_watch() -> RevisionWatch:
    global _watch
    with _created:
        if _watch is None:
            _watch = RevisionWatch()
        return _watch


def reset_revision_watch() -> None:
    """Forget the process's watcher once its thread has ended (tests change the cap between cases)."""
    global _watch
    with _created:
        watch, _watch = _watch, None
    thread = watch._thread if watch is not None else None
    if thread is not None:
        thread.join(timeout=5)
