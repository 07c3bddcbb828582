"""A named lock across processes: a PostgreSQL advisory lock, or a file lock on the embedded SQLite setup."""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection


@contextmanager
def named_lock(name: str) -> Iterator[None]:
    """Held until the block ends; every process sharing the database (or ``var/``) waits its turn."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"egress-portal:{name}".encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    lock_path = Path(settings.VAR_DIR) / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
