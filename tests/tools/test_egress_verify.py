"""tools/egress-verify and manage.py verify_bundle against a real published policy repository checkout."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from jwcrypto import jwk

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from bundle import tree_signature
from exceptions.services.publications import publish_bundle
from foundation.signing import public_key_pem, sign_jws

TOOL = Path(__file__).resolve().parents[2] / "tools" / "egress-verify" / "egress_verify.py"

pytestmark = pytest.mark.django_db


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(policy_repo: Path, submit: Any, approver: Any, tmp_path: Path, settings: Any) -> Path:
    """A clone of the policy repository after a real publish and an audit checkpoint."""
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    approve_request(actor=approver, request=submit())
    assert publish_bundle(trigger="test").status == "published"
    assert write_checkpoint() is not None
    target = tmp_path / "checkout"
    git("clone", "--quiet", str(policy_repo), str(target))
    return target


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    path = tmp_path / "portal.pub.pem"
    path.write_text(public_key_pem(), encoding="ascii")
    return path


def run(
    checkout: Path, *args: str, python: tuple[str, ...] = (sys.executable, "-I")
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EGRESS_", "DJANGO"))}
    return subprocess.run(
        [*python, str(TOOL), str(checkout), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def cilium_file(checkout: Path) -> Path:
    """The team's CiliumNetworkPolicy the publish wrote."""
    [policy] = (checkout / "teams" / "payments" / "cilium").rglob("*.yaml")
    return policy


def test_a_published_tree_verifies_with_the_portals_public_key(checkout: Path, public_key: Path) -> None:
    result = run(checkout, "--public-key", str(public_key))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the portal's signature" in result.stdout and "1 audit checkpoints" in result.stdout
    # Every file of the tree is covered: cilium/istio/opa/teams/MANIFEST.json/CODEOWNERS, OPA's own signature.
    tracked = set(git("ls-files", cwd=checkout).split()) - {"MANIFEST.sig"}
    checkpoints = {path for path in tracked if path.startswith("audit/checkpoints/")}
    assert f"{len(tracked - checkpoints)} signed files" in result.stdout
    assert {"CODEOWNERS", "MANIFEST.json", "opa/.signatures.json"} <= tracked
    assert {path.split("/", 1)[0] for path in tracked} >= {"teams", "istio", "opa"}


def test_an_edited_cilium_file_fails_naming_it(checkout: Path, public_key: Path) -> None:
    policy = cilium_file(checkout)
    policy.write_text(policy.read_text() + '  - toFQDNs:\n      - matchPattern: "*"\n')
    result = run(checkout, "--public-key", str(public_key))
    assert result.returncode == 1
    assert f"FAIL {policy.relative_to(checkout).as_posix()}: edited" in result.stdout


def test_an_added_or_removed_file_fails_naming_it(checkout: Path, public_key: Path) -> None:
    removed = cilium_file(checkout)
    removed.unlink()
    # cilium/ holds no file today (every grant has a team), but the portal owns it.
    forged = checkout / "cilium" / "payments" / "egress-everything.yaml"
    forged.parent.mkdir(parents=True)
    forged.write_text("kind: CiliumNetworkPolicy\n")
    # --allow never reaches into a directory the portal signs.
    result = run(checkout, "--public-key", str(public_key), "--allow", "*")
    assert result.returncode == 1
    assert "FAIL cilium/payments/egress-everything.yaml: added" in result.stdout
    assert f"FAIL {removed.relative_to(checkout).as_posix()}: removed" in result.stdout


def test_an_edited_manifest_fails(checkout: Path, public_key: Path) -> None:
    manifest = checkout / "MANIFEST.json"
    manifest.write_text(manifest.read_text().replace('"grants": 1', '"grants": 2'))
    result = run(checkout, "--public-key", str(public_key))
    assert result.returncode == 1 and "FAIL MANIFEST.json: edited" in result.stdout


def test_unsigned_paths_outside_the_bundle_need_an_explicit_allow(checkout: Path, public_key: Path) -> None:
    workflow = checkout / ".github" / "workflows" / "verify.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("on: push\n")
    refused = run(checkout, "--public-key", str(public_key))
    assert refused.returncode == 1 and "FAIL .github/workflows/verify.yml: added" in refused.stdout
    allowed = run(checkout, "--public-key", str(public_key), "--allow", ".github/*")
    assert allowed.returncode == 0, allowed.stdout
    assert "note .github/workflows/verify.yml: not signed by the portal" in allowed.stdout


def test_an_edited_or_planted_checkpoint_fails(checkout: Path, public_key: Path) -> None:
    [checkpoint] = sorted((checkout / "audit" / "checkpoints").iterdir())
    document = json.loads(checkpoint.read_text())
    document["head_hash"] = "0" * 64
    checkpoint.write_text(json.dumps(document))
    planted = checkout / "audit" / "checkpoints" / "999999999999.json"
    planted.write_text(json.dumps({**document, "jws": "e30.e30.AAAA"}))
    result = run(checkout, "--public-key", str(public_key))
    assert result.returncode == 1
    assert f"FAIL audit/checkpoints/{checkpoint.name}: checkpoint edited" in result.stdout
    assert "FAIL audit/checkpoints/999999999999.json: checkpoint forged" in result.stdout


FORGED_POLICY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "everything"},
    "spec": {"egress": [{"toFQDNs": [{"matchPattern": "*"}]}]},
}


def test_a_genuine_checkpoint_carrying_a_policy_or_copied_into_a_folder_fails(checkout: Path, public_key: Path) -> None:
    """A real, validly signed checkpoint is a carrier: with a Kubernetes object's keys added, or
    copied where a GitOps tool recursing from the root would read it, it is not one the portal wrote."""
    [checkpoint] = sorted((checkout / "audit" / "checkpoints").iterdir())
    document = json.loads(checkpoint.read_text())
    nested = checkout / "audit" / "checkpoints" / "cilium" / checkpoint.name
    nested.parent.mkdir()
    nested.write_text(json.dumps({**document, **FORGED_POLICY}))
    copied = checkout / "audit" / "checkpoints" / "extra" / checkpoint.name
    copied.parent.mkdir()
    copied.write_text(checkpoint.read_text())
    result = run(checkout, "--public-key", str(public_key))
    assert result.returncode == 1, result.stdout
    assert f"FAIL audit/checkpoints/cilium/{checkpoint.name}: not a checkpoint the portal wrote" in result.stdout
    assert f"FAIL audit/checkpoints/extra/{checkpoint.name}: checkpoint moved or renamed" in result.stdout


def test_a_bad_or_missing_signature_or_another_key_exits_3(checkout: Path, public_key: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem(private_key=False))
    wrong_key = run(checkout, "--public-key", str(other))
    assert wrong_key.returncode == 3 and "does not verify" in wrong_key.stderr
    signature = checkout / "MANIFEST.sig"
    header, payload, sig = signature.read_text().strip().split(".")
    signature.write_text(f"{header}.{payload}.{sig[::-1]}\n")
    assert run(checkout, "--public-key", str(public_key)).returncode == 3
    signature.unlink()
    missing = run(checkout, "--public-key", str(public_key))
    assert missing.returncode == 3 and "MANIFEST.sig is missing" in missing.stderr


def test_usage_errors_exit_2(checkout: Path, public_key: Path, tmp_path: Path) -> None:
    assert run(checkout).returncode == 2  # no key
    assert run(checkout, "--public-key", str(tmp_path / "nope.pem")).returncode == 2
    assert run(tmp_path / "nowhere", "--public-key", str(public_key)).returncode == 2
    # Without site-packages there is no `cryptography`: said plainly, not a traceback.
    bare = run(checkout, "--public-key", str(public_key), python=(sys.executable, "-I", "-S"))
    assert bare.returncode == 2 and "needs the 'cryptography' package" in bare.stderr


def test_the_tool_imports_only_the_standard_library_and_cryptography() -> None:
    imported = set()
    for node in ast.walk(ast.parse(TOOL.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


def test_verify_bundle_fails_on_an_edited_cilium_file(checkout: Path) -> None:
    call_command("verify_bundle", str(checkout))  # the portal's own key by default
    policy = cilium_file(checkout)
    policy.write_text(policy.read_text().replace("toFQDNs", "toFQDNs-forged"))
    with pytest.raises(CommandError) as failed:
        call_command("verify_bundle", str(checkout))
    assert failed.value.returncode == 1
    assert f"{policy.relative_to(checkout).as_posix()}: edited" in str(failed.value)


def test_verify_bundle_takes_a_public_key_file(checkout: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem(private_key=False))
    with pytest.raises(CommandError) as failed:
        call_command("verify_bundle", str(checkout), "--public-key", str(other))
    assert failed.value.returncode == 3 and "does not verify" in str(failed.value)


def test_an_rsa_signed_tree_verifies_with_the_rsa_public_key(checkout: Path, tmp_path: Path) -> None:
    rsa = jwk.JWK.generate(kty="RSA", size=2048)
    claims = tree_signature.signed_claims((checkout / "MANIFEST.sig").read_bytes())
    (checkout / "MANIFEST.sig").write_text(sign_jws(claims, key=rsa) + "\n")
    # Checkpoints keep the portal's EC key: given on their own.
    (tmp_path / "rsa.pem").write_bytes(rsa.export_to_pem(private_key=False))
    (tmp_path / "ec.pem").write_text(public_key_pem())
    result = run(
        checkout, "--public-key", str(tmp_path / "rsa.pem"), "--checkpoint-public-key", str(tmp_path / "ec.pem")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_signature.signed_claims((checkout / "MANIFEST.sig").read_bytes())["type"] == "egress-portal.bundle-tree"
    without = run(checkout, "--public-key", str(tmp_path / "rsa.pem"))
    assert without.returncode == 1 and "checkpoint forged or signed by another key" in without.stdout


def test_verify_bundle_without_a_portal_key_asks_for_one(checkout: Path, settings: Any) -> None:
    settings.EGRESS_SIGNING_KEY = ""
    with pytest.raises(CommandError) as failed:
        call_command("verify_bundle", str(checkout))
    assert failed.value.returncode == 2 and "--public-key FILE" in str(failed.value)
