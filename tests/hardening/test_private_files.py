"""What the portal writes under var/ (database, keys, repositories) is readable by its owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_clone_keeps_var_its_database_and_its_keys_to_their_owner(tmp_path: Path) -> None:
    """What `make run` does first, under the usual umask 022: settings, then a database write."""
    var = tmp_path / "var"
    code = (
        "import os; os.umask(0o022);"
        "import django; django.setup();"
        "from django.db import connection;"
        "cursor = connection.cursor(); cursor.execute('CREATE TABLE t (x int)');"
        "cursor.execute('INSERT INTO t VALUES (1)')"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.local",
        "EGRESS_VAR_DIR": str(var),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert mode(var) == 0o700
    for name in ("db.sqlite3", "signing-key.pem", "secrets-key", "secret_key", "opa_bundle_token"):
        assert mode(var / name) == 0o600, name
    assert all(mode(folder) == 0o700 for folder in (var / "celery", *(var / "celery").iterdir()))


def test_an_existing_var_folder_and_database_are_narrowed_to_their_owner(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    (var / "db.sqlite3").touch(mode=0o644)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.local",
        "EGRESS_VAR_DIR": str(var),
    }
    code = "import django; django.setup()"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (mode(var), mode(var / "db.sqlite3")) == (0o700, 0o600)
