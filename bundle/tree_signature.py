"""The signature over the whole published tree: ``MANIFEST.sig`` beside ``MANIFEST.json``.

``MANIFEST.json`` lists the SHA-256 of every file the compiler wrote (every
emitter's files, ``teams/``, ``CODEOWNERS``); files added after it was written
(OPA's ``.signatures.json``) and the manifest itself are listed in the claims of
one compact JWS, ``MANIFEST.sig``::

    {"type": "egress-portal.bundle-tree", "revision": "...", "manifest": "MANIFEST.json",
     "files": {"MANIFEST.json": "<sha256>", "opa/.signatures.json": "<sha256>"},
     "roots": ["CODEOWNERS", "MANIFEST.json", "MANIFEST.sig", "cilium", "istio", "opa", "teams"]}

``roots`` are the top-level entries the portal owns (every registered engine's,
even one with no file today): the verifier accepts no unsigned file under them.

So one signature covers every file of the tree, whatever the emitters are: the
list is the compiled tree's, not a list kept here. ``tools/egress-verify`` (and
``manage.py verify_bundle``, which runs it) checks a checkout against it.

The claims depend only on the files, so an unchanged tree has unchanged
claims; ES256 signatures are randomised, so the publisher keeps the branch's
token when its signed part (header and claims) is the same
(``PolicyRepository._keep_signature``). Pure: the signer is passed in.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bundle.compiler import MANIFEST, MANIFEST_SIGNATURE, Bundle, owned_roots
from bundle.signatures import Signer

TREE_TYPE = "egress-portal.bundle-tree"


def claims(bundle: Bundle) -> dict[str, Any]:
    """What ``MANIFEST.sig`` signs: the manifest's digest and every file it does not list."""
    unlisted = sorted((bundle.unlisted | {MANIFEST}) - {MANIFEST_SIGNATURE})
    return {
        "type": TREE_TYPE,
        "revision": bundle.revision,
        "manifest": MANIFEST,
        "files": {path: bundle.digests[path] for path in unlisted if path in bundle.files},
        # Every registered engine's roots; the verifier adds the top-level entries of the signed files.
        "roots": sorted(owned_roots(())),
    }


def signature_file(token: str) -> bytes:
    return (token + "\n").encode("ascii")


def signed_claims(signature: bytes) -> dict[str, Any]:
    """The claims in a ``MANIFEST.sig`` (unverified: to compare with what would be signed now)."""
    part = signature.decode("ascii").strip().split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def covers(bundle: Bundle) -> bool:
    """Whether the bundle's ``MANIFEST.sig`` signs exactly its files as they are now."""
    signature = bundle.files.get(MANIFEST_SIGNATURE)
    if signature is None:
        return False
    try:
        return signed_claims(signature) == claims(bundle)
    except (ValueError, IndexError, UnicodeDecodeError):
        return False


def sign(bundle: Bundle, signer: Signer) -> Bundle:
    """The bundle with ``MANIFEST.sig`` over its files as they are now (sign OPA's files first)."""
    wanted = claims(bundle)
    signature = bundle.files.get(MANIFEST_SIGNATURE)
    try:
        if signature is not None and signed_claims(signature) == wanted:
            return bundle
    except (ValueError, IndexError, UnicodeDecodeError):
        pass
    return bundle.with_files({MANIFEST_SIGNATURE: signature_file(signer(wanted))})
