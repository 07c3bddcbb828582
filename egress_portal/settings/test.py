"""Test settings.

With PostgreSQL reachable (``DATABASE_URL`` or the local default) the suite
runs on it; otherwise it falls back to SQLite and the tests that need the
server are skipped (under ``CI=true`` they fail instead, see tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from audit.sealing import generate_key_file as generate_audit_key_file
from egress_portal.settings.base import *  # noqa: F403
from egress_portal.settings.base import VAR_DIR, database_from_url
from egress_portal.settings.env import env_str
from foundation.private_files import private_directory
from foundation.signing import generate_key_file

SECRET_KEY = "test-only-not-secret"  # noqa: S105 - tests only
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A fresh clone has no var/ yet (only `make run` used to create it); the SQLite
# fallback, the signing key and the policy repository all live there.
private_directory(VAR_DIR)

# Where a local PostgreSQL is looked for when DATABASE_URL is unset. `.ci/run`
# points it at a closed port to run the suite as a fresh clone without the server.
LOCAL_POSTGRES_ADDRESS = env_str("EGRESS_TEST_POSTGRES_ADDRESS", "127.0.0.1:5432")
LOCAL_POSTGRES_URL = f"postgres://postgres@{LOCAL_POSTGRES_ADDRESS}/egress_portal"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/14"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


_explicit_db = env_str("DATABASE_URL")
if _explicit_db:
    DATABASE_URL = _explicit_db
elif os.environ.get("CI") == "true" or reachable(*_split_address(LOCAL_POSTGRES_ADDRESS)):
    DATABASE_URL = LOCAL_POSTGRES_URL
else:
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'test.sqlite3'}"
DATABASES = {"default": database_from_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The audit table's trigger refuses TRUNCATE unless a session says it is maintenance
    # (audit/migrations/0007): pytest-django empties tables with TRUNCATE between
    # transactional tests. Only the suite's own connections set it; not a security boundary.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c egress.audit_maintenance=on"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so a live server thread and the tests see one database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

REDIS_URL = env_str("REDIS_URL", LOCAL_REDIS_URL)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_WORKER_ENABLE_REMOTE_CONTROL = True
CELERY_BROKER_TRANSPORT_OPTIONS = {}

# Static files come from the app folders through the finders; no collectstatic needed.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Publishing and audit checkpoints: their own repositories under var/ ----------------------
# Tests that exercise publishing turn it on; the others need no broker.
EGRESS_SIGNING_KEY = env_str("EGRESS_SIGNING_KEY") or generate_key_file(VAR_DIR / "test-signing-key.pem")
EGRESS_AUDIT_KEY = env_str("EGRESS_AUDIT_KEY") or generate_audit_key_file(VAR_DIR / "test-audit-key")
OPA_BUNDLE_TOKEN = "test-bundle-token"  # noqa: S105 - tests only
# A fixed key, so every process of a test run (live server, Celery worker) opens the same secrets.
EGRESS_SECRETS_KEY = env_str("EGRESS_SECRETS_KEY") or "dGVzdC1vbmx5LXNlY3JldHMta2V5LTMyLWJ5dGVzISE="
POLICY_REPO_URL = env_str("POLICY_REPO_URL", str(VAR_DIR / "test-policy.git"))
POLICY_WORK_DIR = Path(env_str("POLICY_WORK_DIR", str(VAR_DIR / "test-policy-work")))
EGRESS_AUTO_PUBLISH = env_str("EGRESS_AUTO_PUBLISH", "false") == "true"
AUDIT_CHECKPOINT_WORK_DIR = Path(env_str("AUDIT_CHECKPOINT_WORK_DIR", str(VAR_DIR / "test-checkpoint-work")))

# --- Outbox and mail -------------------------------------------------------------------------
# Tests run the relay themselves; a nudge would leave stray messages in Redis.
OUTBOX_NUDGE = env_str("OUTBOX_NUDGE", "false") == "true"
OUTBOX_LEASE_SECONDS = int(env_str("OUTBOX_LEASE_SECONDS", "600"))
# A worker the tests start may mail a loopback aiosmtpd server.
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(env_str("EMAIL_PORT", "25"))

# --- Sign-in -----------------------------------------------------------------------------------
# Most tests sign approvers in without an authenticator; the enrolment rule has its own tests.
EGRESS_MFA_REQUIRED_FOR_APPROVERS = False

# --- REST API ----------------------------------------------------------------------------------
# Property tests send thousands of calls as one person; the rate-limit tests set their own limits.
EGRESS_API_RATE_LIMITS = {"token": "100000/min", "user": "100000/min"}
