"""MANIFEST.sig: one signature over every published file, stable for an unchanged tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from approvals.services import approve_request
from bundle import tree_signature
from bundle.compiler import MANIFEST, MANIFEST_SIGNATURE, compile_bundle
from exceptions.services.publications import publish_bundle, sign_bundle
from foundation.signing import public_key_pem, verify_jws
from tests.bundle.fixtures import NOW, sample_records
from tests.bundle.test_emitters import TeamFiles, engine


def covered(files: dict[str, bytes]) -> dict[str, str]:
    """Path -> digest of every file the signature covers, checked with the portal's public key."""
    claims = verify_jws(files[MANIFEST_SIGNATURE].decode().strip(), public_pem=public_key_pem())
    assert claims["type"] == tree_signature.TREE_TYPE and claims["manifest"] == MANIFEST
    return {**json.loads(files[MANIFEST])["files"], **claims["files"]}


def test_one_signature_covers_every_file_of_the_tree_including_a_new_engines() -> None:
    with engine(TeamFiles()):
        bundle = sign_bundle(compile_bundle(sample_records(), now=NOW))
    listed = covered(bundle.files)
    assert set(listed) == set(bundle.files) - {MANIFEST_SIGNATURE}
    assert {"MANIFEST.json", "opa/.signatures.json"} <= set(listed)
    assert {path.split("/", 1)[0] for path in listed} >= {"cilium", "istio", "opa"}
    assert all(listed[path] == bundle.digests[path] for path in listed)
    claims = tree_signature.signed_claims(bundle.files[MANIFEST_SIGNATURE])
    assert "teamfiles" in claims["roots"] and "cilium" in claims["roots"]


def test_the_signature_is_over_the_files_as_they_are() -> None:
    bundle = sign_bundle(compile_bundle(sample_records(), now=NOW))
    assert tree_signature.covers(bundle)
    edited = bundle.with_files({"opa/.signatures.json": b'{"signatures": []}\n'})
    assert not tree_signature.covers(edited)


def remote_log(remote: Path) -> list[str]:
    args = ["git", "--git-dir", str(remote), "log", "--format=%H", "main"]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.django_db
def test_an_unchanged_tree_signed_again_makes_no_commit(policy_repo: Path, submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit())
    first = publish_bundle(trigger="first")
    signature = subprocess.run(
        ["git", "--git-dir", str(policy_repo), "show", f"main:{MANIFEST_SIGNATURE}"], capture_output=True, check=True
    ).stdout
    # The cached signatures are gone (a Redis restart): both are made again, with other random bytes.
    cache.clear()
    again = publish_bundle(trigger="again", refresh=True)
    assert (first.status, again.status) == ("published", "unchanged")
    assert remote_log(policy_repo) == [first.commit]
    kept = subprocess.run(
        ["git", "--git-dir", str(policy_repo), "show", f"main:{MANIFEST_SIGNATURE}"], capture_output=True, check=True
    ).stdout
    assert kept == signature
