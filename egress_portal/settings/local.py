"""Embedded defaults for a laptop: SQLite, filesystem broker, console email."""

from __future__ import annotations

import secrets
from pathlib import Path

from audit.sealing import generate_key_file as generate_audit_key_file
from egress_portal.settings.base import *  # noqa: F403
from egress_portal.settings.base import CELERY_BROKER_DIR, DATABASES, VAR_DIR
from egress_portal.settings.env import env_bool, env_str
from foundation.encryption import new_key
from foundation.logging import logging_config
from foundation.private_files import private_directory, private_file, write_private_file
from foundation.signing import generate_key_file

DEBUG = env_bool("DEBUG", True)

# var/ holds keys, the database and the local repositories: its owner's only (mode 700).
for _folder in (VAR_DIR, CELERY_BROKER_DIR, *(CELERY_BROKER_DIR / name for name in ("queue", "processed", "control"))):
    private_directory(_folder)
# SQLite creates its file with the umask's mode; made first at 600, the database
# (and the journal SQLite gives the same mode) is its owner's alone.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and DATABASES["default"]["NAME"] != ":memory:":
    private_file(Path(DATABASES["default"]["NAME"]))


def _generated_secret(name: str, value: str) -> str:
    """A secret generated once per checkout, kept out of the repository in var/ (mode 600)."""
    path = VAR_DIR / name
    write_private_file(path, value.encode("utf-8"))
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = env_str("SECRET_KEY") or _generated_secret("secret_key", secrets.token_urlsafe(50))
# OPA polls /bundles/egress.tar.gz with this bearer token (var/opa_bundle_token).
OPA_BUNDLE_TOKEN = env_str("OPA_BUNDLE_TOKEN") or _generated_secret("opa_bundle_token", secrets.token_urlsafe(32))

EGRESS_SIGNING_KEY = env_str("EGRESS_SIGNING_KEY") or generate_key_file(VAR_DIR / "signing-key.pem")
EGRESS_SECRETS_KEY = env_str("EGRESS_SECRETS_KEY") or _generated_secret("secrets-key", new_key())
EGRESS_AUDIT_KEY = env_str("EGRESS_AUDIT_KEY") or generate_audit_key_file(VAR_DIR / "audit-key")

# Static files come from the app folders through the finders; no collectstatic needed.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# --- Logs ---
# A terminal wants readable lines; LOG_FORMAT=json gives the production shape.
LOG_FORMAT = env_str("LOG_FORMAT", "console")
LOGGING = logging_config(fmt=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
