"""Signed OPA bundles: .signatures.json as OPA verifies it, with the portal's key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from django.test import override_settings

from bundle import signatures
from bundle.compiler import compile_bundle
from exceptions.services.publications import sign_bundle
from foundation.signing import public_key_pem, verify_jws
from tests.bundle.fixtures import NOW, sample_records


def signed_opa_files() -> dict[str, bytes]:
    return sign_bundle(compile_bundle(sample_records(), now=NOW)).files_under("opa")


def test_the_signature_lists_every_opa_file_with_the_hash_opa_computes() -> None:
    files = signed_opa_files()
    token = json.loads(files[".signatures.json"])["signatures"]
    assert len(token) == 1  # OPA accepts exactly one JWT
    claims = verify_jws(token[0], public_pem=public_key_pem())
    listed = {entry["name"]: entry for entry in claims["files"]}
    assert sorted(listed) == sorted(set(files) - {".signatures.json"})
    assert ".manifest" in listed and "egress/policy.rego" in listed
    for name, entry in listed.items():
        assert entry["algorithm"] == "SHA-256"
        assert entry["hash"] == signatures.file_hash(name, files[name])
    # .rego files are hashed as bytes; structured files as their canonical JSON.
    assert listed["egress/policy.rego"]["hash"] == hashlib.sha256(files["egress/policy.rego"]).hexdigest()


def test_structured_files_hash_independently_of_formatting_like_opa() -> None:
    compact = signatures.file_hash("x/data.json", b'{"a":"caf\\u00e9","b":[1,2.50,{"d":null,"c":true}]}')
    spaced = signatures.file_hash("x/data.json", '{ "b": [1, 2.50, {"c": true, "d": null}],\n "a": "café" }'.encode())
    assert compact == spaced
    canonical = '{"a":"café","b":[1,2.50,{"c":true,"d":null}]}'.encode()
    assert compact == hashlib.sha256(canonical).hexdigest()
    assert signatures.file_hash("x/data.json", b'{"a":"cafe"}') != compact


def test_a_grant_pushed_without_the_key_fails_verification() -> None:
    files = signed_opa_files()
    claims = signatures.payload(files[".signatures.json"])
    signed = {entry["name"]: entry["hash"] for entry in claims["files"]}
    shard = next(name for name in files if name.startswith("egress/grants/"))
    tampered = json.loads(files[shard])
    identity = next(iter(tampered))
    tampered[identity]["evil.example"] = [{"id": 999, "port": 443, "protocol": "tcp"}]
    assert signatures.file_hash(shard, json.dumps(tampered).encode()) != signed[shard]
    # Nor can the claims be rewritten: the signature no longer verifies.
    token = json.loads(files[".signatures.json"])["signatures"][0]
    header, _, signature = token.split(".")
    forged = signatures.signatures_file(".".join([header, token.split(".")[1][::-1], signature]))
    with pytest.raises(ValueError, match="does not verify"):
        verify_jws(json.loads(forged)["signatures"][0], public_pem=public_key_pem())


def test_the_same_files_give_the_same_signature_bytes() -> None:
    assert signed_opa_files()[".signatures.json"] == signed_opa_files()[".signatures.json"]


@override_settings(EGRESS_SIGNING_KEY="")
def test_without_a_key_the_bundle_is_left_unsigned() -> None:
    assert ".signatures.json" not in sign_bundle(compile_bundle(sample_records(), now=NOW)).files_under("opa")


@pytest.mark.opa
def test_the_real_opa_engine_verifies_the_token_with_the_public_key() -> None:
    from opa_bindings import OpaEngine

    token = json.loads(signed_opa_files()[".signatures.json"])["signatures"][0]
    engine = OpaEngine()
    engine.add_policy(
        "verify.rego",
        "package verify\nimport rego.v1\n"
        'ok := io.jwt.verify_es256(input.token, input.key) if input.alg == "ES256"\n'
        'ok := io.jwt.verify_rs256(input.token, input.key) if input.alg == "RS256"\n'
        "claims := io.jwt.decode(input.token)[1]\n",
    )
    alg = signatures.header(token)["alg"]
    request: dict[str, Any] = {"token": token, "key": public_key_pem(), "alg": alg}
    assert engine.eval_document("verify.ok", request) is True
    assert engine.eval_document("verify.claims", request)["files"]
    broken = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert engine.eval_document("verify.ok", {**request, "token": broken}) is False


def test_the_command_prints_the_opa_keys_config_with_the_public_key_only() -> None:
    from io import StringIO

    import yaml
    from django.core.management import call_command

    out = StringIO()
    call_command("bundle_signing_key", stdout=out)
    config = yaml.safe_load(out.getvalue())
    key = config["keys"]["egress-portal"]
    assert key["key"].strip() == public_key_pem().strip() and "PRIVATE" not in out.getvalue()
    assert key["algorithm"] in {"ES256", "RS256"}
    assert config["bundles"]["egress"]["signing"]["keyid"] == "egress-portal"


@pytest.mark.parametrize(
    "document",
    [
        b'{"b":[1,-2,{"d":null,"c":true}],"a":"caf\\u00e9 \\u2028 <&> \\"q\\" \\\\ \\n \\u0001"}',
        b'{"x":-0,"y":[0,-0]}',
        b'{"f":2.50,"g":1e3,"h":-0.0}',
        b'{"": {}, "z": [], "k": "\\ud83d\\ude00"}',
    ],
)
def test_the_fast_canonical_hash_equals_the_walk_opa_does(document: bytes) -> None:
    out: list[str] = []
    signatures._walk(json.loads(document, parse_int=signatures._Number, parse_float=signatures._Number), out)
    assert signatures.file_hash.__wrapped__("data.json", document) == hashlib.sha256("".join(out).encode()).hexdigest()


def test_the_compilers_json_is_already_canonical_so_its_bytes_are_hashed_directly() -> None:
    from dataclasses import replace

    records = [*sample_records(), replace(sample_records()[0], id=50, host="xn--caf-dma.example", decided_by="zoë")]
    files = compile_bundle(records, now=NOW).files_under("opa")
    structured = [name for name in files if name.endswith(("data.json", ".manifest"))]
    assert len(structured) >= 3
    for name in structured:
        assert signatures.file_hash(name, files[name], True) == signatures.file_hash.__wrapped__(name, files[name])
