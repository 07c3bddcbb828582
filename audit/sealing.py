"""Seals: HMAC-SHA256 over each event's (seq, hash) and over the chain head, with a key kept outside the database.

The hash chain alone lets anyone with write access to the table rewrite the
newest events and recompute every hash and the head; checkpoints in the policy
repository catch that only up to the last checkpoint. A seal needs the audit key
(``EGRESS_AUDIT_KEY``, never stored in the database, not the bundle signing key),
so someone with the database but not the key cannot make a rewritten or removed
event verify. Each seal names its key (``seal_key_id``) so the key can rotate:
``EGRESS_AUDIT_KEY_RETIRED`` lists older keys the verifier still accepts.

The messages are domain-separated, so an event seal can never pass for a head
seal or the other way round. Imported by the settings (``generate_key_file``):
no model imports here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from foundation.private_files import private_file, write_private_file

EVENT_DOMAIN = "egress-portal.audit-event"
HEAD_DOMAIN = "egress-portal.audit-head"
_KEY_ID_DOMAIN = b"egress-portal.audit-key-id"
MIN_KEY_LENGTH = 32


def generate_key_file(path: Path) -> str:
    """Create a random audit key at ``path`` (mode 600) unless one is there; return it (embedded and test setups)."""
    # O_EXCL: two processes starting at once never each write (and seal with) a key of their own.
    write_private_file(path, (secrets.token_urlsafe(32) + "\n").encode("utf-8"))
    return private_file(path).read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class AuditKeys:
    """The current key (seals new events) and every key a seal may verify with, by key id.

    Held as keyed HMAC objects that each seal copies: the key's pads are hashed once, not per seal.
    """

    current_id: str
    current: hmac.HMAC
    by_id: dict[str, hmac.HMAC]


def key_id_of(key: bytes) -> str:
    return hmac.new(key, _KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:16]


def parse_key(raw: str, name: str) -> bytes:
    value = raw.strip()
    if "PRIVATE KEY" in value:
        raise ImproperlyConfigured(
            f"{name} holds a PEM key; the audit key is its own random secret, not a signing key."
        )
    if len(value) < MIN_KEY_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is {len(value)} characters; an audit key needs at least {MIN_KEY_LENGTH} "
            '(python3 -c "import secrets; print(secrets.token_urlsafe(32))").'
        )
    return value.encode("utf-8")


@lru_cache(maxsize=4)
def _keys(current: str, retired: str) -> AuditKeys:
    if not current.strip():
        raise ImproperlyConfigured(
            "EGRESS_AUDIT_KEY (or EGRESS_AUDIT_KEY_FILE) is not set; audit events cannot be sealed or checked."
        )
    key = parse_key(current, "EGRESS_AUDIT_KEY")
    by_id = {key_id_of(key): _keyed(key)}
    for old in (part for part in re.split(r"[\s,]+", retired) if part):
        old_key = parse_key(old, "EGRESS_AUDIT_KEY_RETIRED")
        by_id.setdefault(key_id_of(old_key), _keyed(old_key))
    return AuditKeys(current_id=key_id_of(key), current=by_id[key_id_of(key)], by_id=by_id)


def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def audit_keys() -> AuditKeys:
    return _keys(getattr(settings, "EGRESS_AUDIT_KEY", ""), getattr(settings, "EGRESS_AUDIT_KEY_RETIRED", ""))


def _mac(keyed: hmac.HMAC, domain: str, seq: int, digest: str) -> str:
    mac = keyed.copy()
    mac.update(f"{domain}|{seq}|{digest}".encode())
    return mac.hexdigest()


def event_seal(keys: AuditKeys, seq: int, event_hash: str) -> str:
    return _mac(keys.current, EVENT_DOMAIN, seq, event_hash)


def head_seal(keys: AuditKeys, last_seq: int, last_hash: str) -> str:
    return _mac(keys.current, HEAD_DOMAIN, last_seq, last_hash)


def seal_problem(keys: AuditKeys, *, head: bool, seq: int, digest: str, seal: str, key_id: str) -> str:
    """'' when ``seal`` is a valid seal of (seq, digest) under the named key; otherwise what is wrong."""
    if not seal:
        return "has no seal"
    key = keys.by_id.get(key_id)
    if key is None:
        return f"is sealed with an unknown audit key {key_id!r} (not EGRESS_AUDIT_KEY nor a retired key)"
    expected = _mac(key, HEAD_DOMAIN if head else EVENT_DOMAIN, seq, digest)
    if not hmac.compare_digest(expected, seal):
        return "does not match its seal (rewritten without the audit key)"
    return ""
