"""The portal's signing key signs claims that verify with its public key, and nothing else does."""

from __future__ import annotations

import pytest
from jwcrypto import jwk

from foundation.signing import key_id, public_key_pem, sign_jws, verify_jws


def test_signed_claims_verify_with_the_public_key_alone() -> None:
    token = sign_jws({"seq": 7, "head": "ab" * 32})
    assert verify_jws(token, public_pem=public_key_pem()) == {"seq": 7, "head": "ab" * 32}
    assert key_id()


def test_a_changed_payload_or_another_key_does_not_verify() -> None:
    header, payload, signature = sign_jws({"seq": 7}).split(".")
    forged = sign_jws({"seq": 8}).split(".")[1]
    with pytest.raises(ValueError, match="does not verify"):
        verify_jws(f"{header}.{forged}.{signature}")
    other = jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem(private_key=False).decode()
    with pytest.raises(ValueError, match="does not verify"):
        verify_jws(f"{header}.{payload}.{signature}", public_pem=other)
