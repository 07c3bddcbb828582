"""The portal's signing key: bundle signatures and audit checkpoints are signed with it.

The key is a PEM private key (EC P-256 for ES256, or RSA for RS256) from the
``EGRESS_SIGNING_KEY`` setting (``EGRESS_SIGNING_KEY_FILE`` in the environment).
The embedded default generates one into ``var/`` once per checkout.

jwcrypto is imported where a key is used, not at the top: with cryptography's
Rust bindings it holds about 10 MB resident, the settings import this module
(``generate_key_file``) and most processes never sign or verify anything.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from foundation.private_files import write_private_file

if TYPE_CHECKING:
    from jwcrypto import jwk


def generate_key_file(path: Path) -> str:
    """Create an EC P-256 private key at ``path`` (mode 600 from the start, in a mode 700 folder)
    unless one is there; return its PEM. Embedded and test settings only: production reads its key."""
    if not path.exists():
        from jwcrypto import jwk

        key = jwk.JWK.generate(kty="EC", crv="P-256")
        write_private_file(path, key.export_to_pem(private_key=True, password=None))
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _load(pem: str) -> jwk.JWK:
    from jwcrypto import jwk
    from jwcrypto.common import JWException

    try:
        key = jwk.JWK.from_pem(pem.encode("utf-8"))
    except (ValueError, TypeError, JWException) as exc:
        raise ImproperlyConfigured(f"EGRESS_SIGNING_KEY is not a PEM private key: {exc}") from exc
    if not key.has_private:
        raise ImproperlyConfigured("EGRESS_SIGNING_KEY holds a public key; the portal needs the private key.")
    return key


def signing_key() -> jwk.JWK:
    pem = getattr(settings, "EGRESS_SIGNING_KEY", "")
    if not pem:
        raise ImproperlyConfigured("EGRESS_SIGNING_KEY (or EGRESS_SIGNING_KEY_FILE) is not set.")
    return _load(pem)


def algorithm(key: jwk.JWK | None = None) -> str:
    key = key or signing_key()
    return "ES256" if key.get("kty") == "EC" else "RS256"


def key_id(key: jwk.JWK | None = None) -> str:
    return (key or signing_key()).thumbprint()


def public_key_pem() -> str:
    return signing_key().export_to_pem(private_key=False).decode("ascii")


def sign_jws(claims: dict[str, Any], *, key: jwk.JWK | None = None) -> str:
    """A compact JWS over the JSON of ``claims`` (keys sorted), with ``alg`` and ``kid`` in the header."""
    from jwcrypto import jws

    key = key or signing_key()
    token = jws.JWS(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    token.add_signature(key, alg=None, protected={"alg": algorithm(key), "kid": key_id(key)})
    return str(token.serialize(compact=True))


def verify_jws(compact: str, *, public_pem: str | None = None) -> dict[str, Any]:
    """The claims of a compact JWS if its signature verifies; raises ``ValueError`` otherwise."""
    from jwcrypto import jwk, jws
    from jwcrypto.common import JWException

    key = jwk.JWK.from_pem(public_pem.encode("ascii")) if public_pem else signing_key()
    token = jws.JWS()
    try:
        token.deserialize(compact)
        token.verify(key)
    except (JWException, ValueError) as exc:
        raise ValueError(f"signature does not verify: {exc}") from exc
    claims: dict[str, Any] = json.loads(token.payload)
    return claims
