"""Long polling for the OPA bundle endpoint: wait, bounded, for the revision to change.

One watcher thread per process, running only while someone waits, checks the
open grants' fingerprint (one indexed aggregate) every
``OPA_LONG_POLL_INTERVAL_SECONDS``, asks ``opa_archive`` for the revision only
when that changed, and wakes every waiting request at once: a hundred waiting
engines cost one small query per interval. The number of waiting requests per process is capped: a request
over the cap gets the normal (immediate) answer.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from exceptions.selectors import open_grants_fingerprint
from exceptions.services.publications import opa_archive

logger = logging.getLogger(__name__)


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

    def _watch(self) -> None:
        fingerprint: tuple[int, int, int] | None = None
        try:
            while True:
                with self._changed:
                    if self._waiting == 0:
                        self._thread = None
                        self._revision = None
                        return
                revision = None
                try:
                    now = timezone.now()
                    latest = open_grants_fingerprint(now=now)
                    if latest != fingerprint:
                        fingerprint = latest
                        revision, _ = opa_archive(now=now)
                except Exception:  # a database hiccup must not strand the waiting requests
                    logger.exception("bundle revision check failed")
                    fingerprint = None
                with self._changed:
                    if revision is not None and revision != self._revision:
                        self._revision = revision
                        self._changed.notify_all()
                time.sleep(settings.OPA_LONG_POLL_INTERVAL_SECONDS)
        finally:
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
