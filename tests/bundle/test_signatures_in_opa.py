"""The real OPA engine verifies a signed bundle the way OPA's bundle verifier does.

The in-process bindings cannot load a bundle tarball, so ``verify_bundle_signature.rego``
does in Rego, with OPA's own builtins, what ``bundle/verify.go`` and ``bundle/hash.go``
do: exactly one JWT in ``.signatures.json``, its signature checked with the published
public key (``io.jwt.decode_verify``, alg pinned), the scope, every bundle file listed
and every listed file present, and each file's SHA-256 (``crypto.sha256``) — over the
bytes for ``.rego`` files, and for ``data.json``/``.manifest`` over OPA's canonical JSON
(objects with sorted keys, no whitespace, primitives as Go's encoder writes them with
HTML escaping off). ``json.marshal`` is Go's encoder with sorted keys but HTML escaping
on; the policy undoes exactly the ``\\u003c``/``\\u003e``/``\\u0026`` escapes, token by
token, so the Rego hash follows OPA's hash walk as written (checked below against the
portal's signer on documents with those characters, U+2028, numbers as written and
escapes). It is a verifier written after OPA's source, run in the real engine, not
OPA's own bundle loader (that needs the ``opa`` binary).
Nothing is computed in Python: the engine gets the files' text and the public key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk

from approvals.services import approve_request
from bundle import signatures
from bundle.compiler import compile_bundle
from exceptions.services.publications import sign_bundle
from foundation.outbox.relay import relay_due
from foundation.signing import algorithm, public_key_pem, sign_jws
from tests.bundle.fixtures import NOW, sample_records
from tests.bundle.test_publications import archive_files

pytestmark = pytest.mark.opa
POLICY = Path(__file__).with_name("verify_bundle_signature.rego")


@pytest.fixture(scope="module")
def engine() -> Any:
    from opa_bindings import OpaEngine

    opa = OpaEngine()
    opa.add_policy("verify_bundle_signature.rego", POLICY.read_text())
    yield opa
    opa.close()


def _bundle() -> dict[str, bytes]:
    return sign_bundle(compile_bundle(sample_records(), now=NOW)).files_under("opa")


def _errors(engine: Any, files: dict[str, bytes], *, key: str | None = None) -> set[str]:
    request = {
        "files": {name: data.decode("utf-8") for name, data in files.items()},
        "public_key": key or public_key_pem(),
        "alg": algorithm(),
        "scope": "",
    }
    return set(engine.eval_document("bundle_verify.errors", request))


def _resigned(files: dict[str, bytes], claims: dict[str, Any]) -> dict[str, bytes]:
    return {**files, signatures.SIGNATURES: signatures.signatures_file(sign_jws(claims))}


def _shard(files: dict[str, bytes]) -> str:
    return next(name for name in sorted(files) if name.startswith("egress/grants/"))


def test_the_published_bundle_verifies_in_the_engine(engine: Any) -> None:
    files = _bundle()
    assert {".manifest", "egress/policy.rego", _shard(files)} <= set(files)
    assert _errors(engine, files) == set()


def test_a_changed_data_file_fails_with_its_digest(engine: Any) -> None:
    files = _bundle()
    shard = _shard(files)
    document = json.loads(files[shard])
    identity = next(iter(document))
    host = next(iter(document[identity]))
    document[identity][host][0]["port"] += 1
    [error] = _errors(engine, {**files, shard: json.dumps(document).encode()})
    assert error.startswith(f"{shard}: digest mismatch")


def test_an_added_grant_fails_whether_in_a_signed_file_or_a_new_one(engine: Any) -> None:
    files = _bundle()
    shard = _shard(files)
    document = json.loads(files[shard])
    identity = next(iter(document))
    grant = {"id": 999, "host": "evil.example", "port": 443, "protocol": "tcp"}
    document[identity]["evil.example"] = [grant]
    [error] = _errors(engine, {**files, shard: json.dumps(document).encode()})
    assert error.startswith(f"{shard}: digest mismatch")
    extra = "egress/grants/ff/data.json" if shard != "egress/grants/ff/data.json" else "egress/grants/fe/data.json"
    added = json.dumps({"spiffe://x/ns/a/sa/b": {"evil.example": [grant]}}).encode()
    assert _errors(engine, {**files, extra: added}) == {f"{extra}: not included in bundle signature"}


def test_a_file_dropped_from_the_signed_list_fails_even_with_the_right_key(engine: Any) -> None:
    files = _bundle()
    shard = _shard(files)
    claims = signatures.claims(files)
    claims["files"] = [entry for entry in claims["files"] if entry["name"] != shard]
    assert _errors(engine, _resigned(files, claims)) == {f"{shard}: not included in bundle signature"}
    # And a listed file the bundle does not have.
    missing = {**files}
    del missing[shard]
    assert _errors(engine, missing) == {f"{shard}: specified in the signature but not found in the bundle"}


def test_a_token_signed_by_another_key_or_edited_fails(engine: Any) -> None:
    files = _bundle()
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    forged = {**files, signatures.SIGNATURES: signatures.signatures_file(sign_jws(signatures.claims(files), key=other))}
    assert "signature does not verify with the configured key" in _errors(engine, forged)
    # The forger's own public key verifies it: the engine really checks which key signed.
    assert _errors(engine, forged, key=other.export_to_pem(private_key=False).decode()) == set()
    token = json.loads(files[signatures.SIGNATURES])["signatures"][0]
    head, _, signature = token.split(".")
    claims = signatures.payload(files[signatures.SIGNATURES])
    claims["files"] = claims["files"][1:]
    edited = ".".join([head, signatures.signatures_file(sign_jws(claims)).decode().split(".")[1], signature])
    assert "signature does not verify with the configured key" in _errors(
        engine, {**files, signatures.SIGNATURES: signatures.signatures_file(edited)}
    )


def test_two_tokens_are_refused_like_opa_does(engine: Any) -> None:
    files = _bundle()
    token = json.loads(files[signatures.SIGNATURES])["signatures"][0]
    doubled = json.dumps({"signatures": [token, token]}).encode()
    assert "multiple JWTs not supported (expected exactly one)" in _errors(
        engine, {**files, signatures.SIGNATURES: doubled}
    )


@pytest.mark.parametrize(
    "document",
    [
        b'{"b":[1,-2,{"d":null,"c":true}],"a":"caf\\u00e9 \\u2028 <&> \\"q\\" \\\\ \\n \\u0001"}',
        b'{"x":-0,"y":[0,-0],"f":2.50,"g":1e3,"h":-0.0}',
        b'{"": {}, "z": [], "k": "\\ud83d\\ude00", "lit": "\\\\u003c \\\\\\u003c \\u003c\\u003e\\u0026"}',
        b'{"\\u00e9": 1, "e": 2, "E": 3, "<": 4}',
    ],
)
def test_the_engines_canonical_hash_is_the_signers_for_awkward_json(engine: Any, document: bytes) -> None:
    """The signer's hash (the same as OPA's walk, test_signatures.py) equals the one Rego computes."""
    files = {"x/data.json": document, "egress/policy.rego": b"package egress\n"}
    claims = signatures.claims(files)
    assert _errors(engine, _resigned(files, claims)) == set()
    wrong = {**claims, "files": [{**e, "hash": "0" * 64} for e in claims["files"]]}
    assert len(_errors(engine, _resigned(files, wrong))) == 2


@pytest.mark.django_db
def test_the_archive_the_endpoint_serves_verifies_in_the_engine(
    engine: Any, client: Any, publishing: Path, submit: Any, approver: Any
) -> None:
    """The stored artifact, as a poll gets it: its .signatures.json covers every file, with the portal's key."""
    approve_request(actor=approver, request=submit())
    relay_due()
    files = archive_files(client.get("/bundles/egress.tar.gz", HTTP_AUTHORIZATION="Bearer test-bundle-token").content)
    shard = _shard(files)
    assert {signatures.SIGNATURES, ".manifest", "egress/policy.rego", shard} <= set(files)
    assert _errors(engine, files) == set()
    [error] = _errors(engine, {**files, shard: files[shard].replace(b"443", b"444")})
    assert error.startswith(f"{shard}: digest mismatch")
