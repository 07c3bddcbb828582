"""OPA bundle signatures: ``.signatures.json`` as OPA verifies it.

The file holds one compact JWT whose payload lists every file of the bundle
with its SHA-256 (``{"files": [{"name", "hash", "algorithm"}]}``). OPA hashes
``.rego`` files as bytes and structured files (``data.json``, ``.manifest``)
as their parsed JSON, object keys sorted, re-encoded without whitespace, so
the signature does not depend on formatting. The signer (the portal's key) is
passed in: this module stays pure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

SIGNATURES = ".signatures.json"
STRUCTURED = {"data.json", "data.yaml", ".manifest", SIGNATURES}
ALGORITHM = "SHA-256"

Signer = Callable[[dict[str, Any]], str]  # claims -> compact JWS


class _Number(str):
    """A JSON number kept as written (OPA reads numbers as json.Number)."""


def _go_string(value: str) -> str:
    # Go's encoder (SetEscapeHTML(false)): UTF-8 as is, but U+2028/U+2029 escaped.
    return json.dumps(value, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _walk(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _walk(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    else:
        out.append(json.dumps(value))  # true, false, null


@lru_cache(maxsize=512)  # the current bundle's files and some of the last ones
def file_hash(name: str, data: bytes, compact: bool = False) -> str:
    """The SHA-256 OPA computes for ``name`` when it verifies the bundle.

    ``compact``: the file was written with sorted keys, no whitespace and only
    ASCII (the compiler's ``opa.dumps``); without a ``\\u`` escape in it, its
    bytes are already the canonical text.
    """
    if name.rsplit("/", 1)[-1] not in STRUCTURED:
        return hashlib.sha256(data).hexdigest()
    if compact and b"\\u" not in data and (b"-0" not in data or not _NEGATIVE_ZERO.search(data)):
        return hashlib.sha256(data.rstrip(b"\n")).hexdigest()
    try:
        # The C encoder gives the same text as OPA's walk when every number is an
        # integer written plainly (Python would respell 2.50 or -0): 100x faster.
        if _NEGATIVE_ZERO.search(data):
            raise _Respelled
        canonical = json.dumps(
            json.loads(data, parse_float=_respelled, parse_constant=_respelled),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        canonical = canonical.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    except _Respelled:
        out: list[str] = []
        _walk(json.loads(data, parse_int=_Number, parse_float=_Number), out)
        canonical = "".join(out)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Respelled(Exception):
    pass


def _respelled(literal: str) -> Any:
    raise _Respelled(literal)


_NEGATIVE_ZERO = re.compile(rb"(?<![\w.])-0(?![\d.eE])")


def claims(files: Mapping[str, bytes], *, compact: bool = False) -> dict[str, Any]:
    """The JWT payload over the OPA bundle's files (names relative to the bundle root)."""
    return {
        "files": [
            {"name": name, "hash": file_hash(name, data, compact), "algorithm": ALGORITHM}
            for name, data in sorted(files.items())
            if name != SIGNATURES
        ]
    }


def sign(files: Mapping[str, bytes], signer: Signer, *, compact: bool = False) -> bytes:
    """``.signatures.json`` for the OPA bundle ``files`` (relative to its root)."""
    return signatures_file(signer(claims(files, compact=compact)))


def signatures_file(token: str) -> bytes:
    return (json.dumps({"signatures": [token]}, sort_keys=True) + "\n").encode("ascii")


def signed_part(signatures_json: bytes) -> str:
    """``header.payload`` of the token: equal for two signatures by one key over the same files."""
    [token] = json.loads(signatures_json)["signatures"]
    return str(token).rsplit(".", 1)[0]


def _segment(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def payload(signatures_json: bytes) -> dict[str, Any]:
    """The claims of a ``.signatures.json`` (unverified: for comparison and display)."""
    return _segment(signed_part(signatures_json).split(".", 1)[1])


def header(token: str) -> dict[str, Any]:
    """The token's protected header (``alg``, ``kid``)."""
    return _segment(token.split(".", 1)[0])
