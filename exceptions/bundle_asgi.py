"""The OPA bundle endpoint as a small ASGI app: long polls wait on the event loop, not on a thread.

``egress_portal.asgi:bundles`` serves only ``/bundles/egress.tar.gz`` (and a
``/healthz`` for the process manager) under uvicorn; ``egress_portal.asgi:application``
is the same app in front of Django's ASGI application for everything else.
The contract is the WSGI endpoint's (``exceptions/bundle_views.py``): bearer
token, ``ETag`` the quoted revision, 304 or 200 with the stored archive,
``Prefer: wait=N`` capped by ``OPA_LONG_POLL_MAX_WAIT_SECONDS``, the security
middleware's redirect and headers. What differs is the waiting: a waiter is a
coroutine on an ``asyncio.Event``, so thousands wait in one process and there is
no cap of waiting requests.

One watcher task per process runs while anyone waits. On PostgreSQL it holds one
psycopg ``AsyncConnection`` that ``LISTEN``s on the channel the publish
``NOTIFY``s when it moves the ``ServedBundle`` row, and re-reads the row every
``OPA_LONG_POLL_RECHECK_SECONDS`` in case a notification was lost; elsewhere
(SQLite) it re-reads the row every ``OPA_LONG_POLL_INTERVAL_SECONDS``. Reads go
through the ORM's selectors on one thread of their own and are shared: a
thousand polls that find the revision moved cause one read of the pointer and
one of the archive, not a thousand.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.middleware.security import SecurityMiddleware
from django.urls import reverse

from exceptions.bundle_views import authorised, bundle_response, known_etags, prefer_wait, unauthorised
from exceptions.selectors import served_archive, served_bundle
from exceptions.services.artifacts import SERVED_CHANNEL
from exceptions.services.publications import ensure_served_bundle

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # Django's ASGIHandler is typed with a dict scope
T = TypeVar("T")

# The longest the watcher goes without looking whether anyone still waits.
_IDLE_CHECK_SECONDS = 1.0
# Archives kept in memory, by SHA-256 (the served one and the one before).
_ARCHIVES_KEPT = 2


@dataclass(frozen=True)
class Served:
    revision: str
    sha256: str


def _in_db_thread(read: Callable[[], T]) -> T:
    """Run ``read`` as a request would: a stale or broken connection is replaced first."""
    close_old_connections()
    try:
        return read()
    except Exception:
        connection.close()
        raise


def _pointer() -> Served:
    revision, sha256 = served_bundle() or ensure_served_bundle()
    return Served(revision, sha256)


def _stored_archive() -> tuple[str, str, bytes]:
    served = served_archive()
    if served is None:  # pragma: no cover - the pointer row is never deleted
        raise RuntimeError("the served bundle disappeared")
    return served


async def _listener() -> psycopg.AsyncConnection[Any] | None:
    """A connection of its own LISTENing on the publish's channel; None without PostgreSQL."""
    if connection.vendor != "postgresql":
        return None
    params = connection.get_connection_params()
    for sync_only in ("cursor_factory", "context"):  # Django's are for its synchronous connections
        params.pop(sync_only, None)
    try:
        listener = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        await listener.execute(f"LISTEN {SERVED_CHANNEL}")
    except psycopg.Error:
        logger.exception("bundle watch: LISTEN failed; re-reading the served revision instead")
        return None
    return listener


class ServedWatch:
    """What this process knows of the served bundle, and the waiters on its next move."""

    def __init__(self) -> None:
        self.served: Served | None = None
        # True while the watcher runs and has read the row since it began listening: then
        # ``served`` is at most a notification (or a re-read interval) behind the database.
        self.live = False
        self._changed = asyncio.Event()
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None
        self._reading: tuple[float, asyncio.Future[Served]] | None = None
        self._archive_reading: asyncio.Future[tuple[str, bytes]] | None = None
        self._archives: dict[str, tuple[str, bytes]] = {}
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opa-bundle-db")

    @property
    def waiting(self) -> int:
        return self._waiting

    async def fresh(self, *, since: float) -> Served:
        """The served bundle as read from the database after ``since`` (a read already under way
        that began later is shared)."""
        while True:
            # A finished read may still be here (its done callback runs later): awaiting it would not
            # yield to the loop, so this loop would spin on it. Start a new one instead.
            if self._reading is None or self._reading[1].done():
                read = asyncio.ensure_future(self._read())
                self._reading = (time.monotonic(), read)
                read.add_done_callback(self._read_done)
            started, shared = self._reading
            served = await asyncio.shield(shared)
            if started >= since:
                return served

    def _read_done(self, future: asyncio.Future[Served]) -> None:
        if self._reading is not None and self._reading[1] is future:
            self._reading = None

    async def _read(self) -> Served:
        loop = asyncio.get_running_loop()
        served = await loop.run_in_executor(self._db, _in_db_thread, _pointer)
        if served.sha256 not in self._archives:
            # Fetched before the waiters wake, so they all find the bytes in memory.
            revision, sha256, archive = await loop.run_in_executor(self._db, _in_db_thread, _stored_archive)
            self._keep(sha256, revision, archive)
            served = Served(revision, sha256)
        self._seen(served)
        return served

    def _keep(self, sha256: str, revision: str, archive: bytes) -> None:
        self._archives[sha256] = (revision, archive)
        while len(self._archives) > _ARCHIVES_KEPT:
            del self._archives[next(iter(self._archives))]

    def _seen(self, served: Served) -> None:
        if served != self.served:
            self.served = served
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def archive(self, sha256: str) -> tuple[str, bytes]:
        """The (revision, bytes) of ``sha256`` from memory, or the served one from the database."""
        found = self._archives.get(sha256)
        if found is not None:
            return found
        if self._archive_reading is None or self._archive_reading.done():
            self._archive_reading = asyncio.ensure_future(self._read_archive())
            self._archive_reading.add_done_callback(self._archive_read_done)
        return await asyncio.shield(self._archive_reading)

    def _archive_read_done(self, future: asyncio.Future[tuple[str, bytes]]) -> None:
        if self._archive_reading is future:
            self._archive_reading = None

    async def _read_archive(self) -> tuple[str, bytes]:
        loop = asyncio.get_running_loop()
        revision, sha256, archive = await loop.run_in_executor(self._db, _in_db_thread, _stored_archive)
        self._keep(sha256, revision, archive)
        return revision, archive

    async def wait(self, *, known: str, timeout: float) -> Served | None:
        """Wait up to ``timeout`` seconds while the served revision is still ``known``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting += 1
        if self._task is None:
            self._task = loop.create_task(self._watch())
        try:
            while self.served is not None and self.served.revision == known:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    break
        finally:
            self._waiting -= 1
        return self.served

    async def _watch(self) -> None:
        listener = await _listener()
        recheck = settings.OPA_LONG_POLL_RECHECK_SECONDS if listener else settings.OPA_LONG_POLL_INTERVAL_SECONDS
        next_read = 0.0  # read the row once LISTEN is in place: a move just before it is not missed
        try:
            while True:
                if self._waiting == 0:
                    # Decided without an await in between: a waiter arriving now starts a new watcher.
                    self._task, self.live = None, False
                    return
                if time.monotonic() >= next_read:
                    try:
                        await self.fresh(since=time.monotonic())
                        self.live = True
                    except Exception:  # a database hiccup must not strand the waiters
                        logger.exception("bundle revision check failed")
                        self.live = False
                    next_read = time.monotonic() + recheck
                pause = max(min(next_read - time.monotonic(), _IDLE_CHECK_SECONDS), 0.0)
                if listener is None:
                    await asyncio.sleep(pause)
                    continue
                try:
                    async for notice in listener.notifies(timeout=pause, stop_after=1):
                        if self.served is None or notice.payload != self.served.revision:
                            next_read = 0.0
                except psycopg.Error:
                    logger.exception("bundle watch: the LISTEN connection failed; listening again")
                    await listener.close()
                    self.live = False
                    listener = await _listener()
                    next_read = 0.0
                    if listener is None:
                        recheck = settings.OPA_LONG_POLL_INTERVAL_SECONDS
        except BaseException:
            self._task, self.live = None, False
            raise
        finally:
            if listener is not None:
                await listener.close()


class BundleApp:
    """ASGI: OPA's bundle polls here; anything else to ``fallback`` (Django), or 404 without one."""

    def __init__(self, fallback: ASGIApp | None = None) -> None:
        self.fallback = fallback
        self.watch = ServedWatch()
        self._security = SecurityMiddleware(lambda request: HttpResponse())
        self._path = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if not self._path:
            self._path = reverse("opa-bundle")
        if scope["type"] == "http" and scope["path"] == self._path:
            await self._poll(scope, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/healthz":
            await _send(send, HttpResponse('{"status": "ok"}', content_type="application/json"))
        elif scope["type"] == "http":
            await _send(send, HttpResponse("Not found.\n", status=404, content_type="text/plain"))

    async def _poll(self, scope: Scope, send: Send) -> None:
        request = ASGIRequest(scope, io.BytesIO())
        body = None
        response: HttpResponse | None
        try:
            response = self._security.process_request(request)  # HTTPS redirect, as in front of the WSGI view
        except DisallowedHost:
            response = HttpResponseBadRequest("Bad host.\n", content_type="text/plain")
        if response is None:
            if request.method != "GET":
                response = HttpResponseNotAllowed(["GET"])
            elif not authorised(request):
                response = unauthorised()
            else:
                response, body = await self._answer(request)
        await _send(send, self._security.process_response(request, response), body)

    async def _answer(self, request: HttpRequest) -> tuple[HttpResponse, bytes | None]:
        arrived = time.monotonic()
        known = known_etags(request)
        wait = prefer_wait(request)
        served = self.watch.served
        if not (self.watch.live and served is not None and f'"{served.revision}"' in known):
            served = await self.watch.fresh(since=arrived)
        if wait and f'"{served.revision}"' in known:
            served = await self.watch.wait(known=served.revision, timeout=wait) or served
        if f'"{served.revision}"' in known:
            return bundle_response(revision=served.revision, archive=None, long_poll=bool(wait)), None
        revision, archive = await self.watch.archive(served.sha256)
        return bundle_response(revision=revision, archive=archive, long_poll=bool(wait)), archive


async def _send(send: Send, response: HttpResponse, body: bytes | None = None) -> None:
    """``response``'s status and headers, then ``body`` (the shared archive, not copied) or its content."""
    content = response.content if body is None else body
    if not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(content))
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
