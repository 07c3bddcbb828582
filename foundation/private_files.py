"""Files the portal keeps under ``var/`` (keys, the SQLite database, local repositories) are its own.

The folder is mode 700, so whatever a library creates inside it (git's
objects, the broker's messages, SQLite's journal) is out of other users'
reach whatever the umask; keys and the database file are also mode 600
themselves, created that way rather than chmod-ed after they were written.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it readable by its owner only."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o777 != DIRECTORY_MODE:
        path.chmod(DIRECTORY_MODE)
    return path


def write_private_file(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new file at ``path`` with mode 600; False (and nothing written) if it exists."""
    private_directory(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def private_file(path: Path) -> Path:
    """Create an empty ``path`` with mode 600 if absent (SQLite opens it as a new database and gives its
    journal the same mode); an existing file of ours is narrowed to 600."""
    if not write_private_file(path, b"") and path.stat().st_uid == os.getuid():
        path.chmod(FILE_MODE)
    return path
