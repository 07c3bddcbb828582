"""Secrets the portal must read back (TOTP seeds, webhook signing secrets), sealed at rest.

Each value is stored as ``fernet:<token>``: a Fernet token (AES-128-CBC and
HMAC-SHA256, from ``cryptography``) under ``EGRESS_SECRETS_KEY``. Keys listed
in ``EGRESS_SECRETS_KEY_RETIRED`` still open old values (``MultiFernet``) so
the key can be rotated: set the new key, list the old one as retired, run
``manage.py reencrypt_secrets``, then drop the retired key.

Plain text is never accepted on read. The migrations that introduced sealing
(``approvals`` ``0004``, ``webhooks`` ``0002``) are the one place that seals
values stored before them (``seal_legacy``); afterwards a value without the
prefix, or one no configured key opens, is an error naming what to do, never
a silent fallback. A database copy without the key yields no usable secret.

cryptography is imported where a key is used, as in ``foundation/signing.py``:
the settings import this module and most processes never open a secret.
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from foundation.hooks import Hook

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

PREFIX = "fernet:"
KEY_SETTING = "EGRESS_SECRETS_KEY"
RETIRED_SETTING = "EGRESS_SECRETS_KEY_RETIRED"
MAKE_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretNotReadable(Exception):
    """A stored secret that no configured key opens, or one left in plain text."""


def key_problem(key: str) -> str:
    """Why ``key`` is not a Fernet key ('' when it is): 32 bytes in url-safe base64."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return "is not url-safe base64"
    return "" if len(raw) == 32 else f"decodes to {len(raw)} bytes, not 32"


def new_key() -> str:
    """A fresh Fernet key (what ``Fernet.generate_key`` makes), without importing cryptography."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def split_keys(raw: str) -> list[str]:
    """Retired keys from one setting: separated by commas, spaces or lines (a file may list one per line)."""
    return [key for key in raw.replace(",", " ").split() if key]


@lru_cache(maxsize=4)
def _multi_fernet(primary: str, retired: tuple[str, ...]) -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet

    if not primary:
        raise ImproperlyConfigured(f"{KEY_SETTING} (or {KEY_SETTING}_FILE) is not set; make one with {MAKE_KEY}")
    for name, key in ((KEY_SETTING, primary), *((RETIRED_SETTING, key) for key in retired)):
        problem = key_problem(key)
        if problem:
            raise ImproperlyConfigured(f"{name}: a key {problem}; make one with {MAKE_KEY}")
    return MultiFernet([Fernet(primary.encode("ascii")), *(Fernet(key.encode("ascii")) for key in retired)])


def _keys() -> MultiFernet:
    retired = getattr(settings, RETIRED_SETTING, ())
    return _multi_fernet(getattr(settings, KEY_SETTING, ""), tuple(retired))


def encrypt(text: str) -> str:
    return PREFIX + _keys().encrypt(text.encode("utf-8")).decode("ascii")


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def _token(value: str) -> bytes:
    if not is_sealed(value):
        raise SecretNotReadable(
            "a secret in the database is stored in plain text; "
            "`manage.py migrate` seals the ones stored before encryption at rest"
        )
    return value.removeprefix(PREFIX).encode("ascii")


def decrypt(value: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _keys().decrypt(_token(value)).decode("utf-8")
    except InvalidToken as exc:
        raise SecretNotReadable(
            f"a secret in the database opens with neither {KEY_SETTING} nor any key in {RETIRED_SETTING} "
            "(was a retired key dropped before `manage.py reencrypt_secrets` ran?)"
        ) from exc


def reencrypt(value: str) -> str:
    """``value`` sealed again under the current key (for key rotation); plain text is refused."""
    from cryptography.fernet import InvalidToken

    try:
        return PREFIX + _keys().rotate(_token(value)).decode("ascii")
    except InvalidToken as exc:
        raise SecretNotReadable(f"a secret opens with no configured key ({KEY_SETTING}, {RETIRED_SETTING})") from exc


def seal_legacy(value: str) -> str:
    """For the migrations only: seal a value stored in plain text; a sealed one must open and is kept."""
    if is_sealed(value):
        decrypt(value)
        return value
    return encrypt(value)


class EncryptedTextField(models.TextField):
    """Text sealed with ``encrypt`` on its way to the database and opened on its way back.

    Lookups on it match nothing (each seal is randomised): look rows up by another field.
    """

    description = "Text encrypted at rest with EGRESS_SECRETS_KEY"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(value)


# Each app that keeps sealed secrets registers a function that seals them all again
# under the current key, in the caller's transaction, and says what it did:
# (kind, how many values). `manage.py reencrypt_secrets` calls them all.
reencryptors: Hook[[], tuple[str, int]] = Hook("reencryptors")
