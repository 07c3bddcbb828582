#!/usr/bin/env python3
"""egress-verify: check a checkout of the Egress Portal's policy repository against the portal's signature.

Every file the portal publishes is covered by one signature: ``MANIFEST.sig``
(a compact JWS, ES256 or RS256) lists the SHA-256 of ``MANIFEST.json`` and of
the files added after it (OPA's ``.signatures.json``); ``MANIFEST.json`` lists
the SHA-256 of every other file. This tool verifies the signature with the
portal's public key, then walks the directory: a file edited, added or removed
since the portal signed the tree is named and the exit code is non-zero.
Audit checkpoints (``audit/checkpoints/<seq>.json``, pushed to the same
branch by the portal) carry their own signature and are verified as
checkpoints. Run it in the policy repository's CI before anything is applied.

Python 3.11+, the standard library and the ``cryptography`` package (for the
ECDSA/RSA check; ``pip install cryptography``). No Django, no portal code: copy
this one file into a CI image. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

EXIT_OK = 0  # the signature verifies and every file is the one the portal signed
EXIT_MISMATCH = 1  # a file was edited, added or removed, or a checkpoint does not verify
EXIT_USAGE = 2  # bad arguments, an unreadable directory or key, or `cryptography` missing
EXIT_SIGNATURE = 3  # MANIFEST.sig is missing, malformed, or not signed by the given key(s)

MANIFEST = "MANIFEST.json"
MANIFEST_SIGNATURE = "MANIFEST.sig"
TREE_TYPE = "egress-portal.bundle-tree"
CHECKPOINT_DIR = "audit/checkpoints"
CHECKPOINT_TYPE = "egress-portal.audit-checkpoint"
# Exactly the keys the portal writes in a checkpoint file (audit/checkpoints.py Checkpoint.document).
CHECKPOINT_KEYS = ("type", "seq", "head_hash", "time", "key_id", "jws")
ALGORITHMS = {"ES256", "RS256"}


class Failure(Exception):
    """Stop with a message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- keys and JWS -------------------------------------------------------------------


def _crypto() -> Any:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
    except ImportError:
        raise Failure(
            "egress-verify needs the 'cryptography' package to check ECDSA/RSA signatures: pip install cryptography",
            EXIT_USAGE,
        ) from None
    return argparse.Namespace(
        InvalidSignature=InvalidSignature,
        hashes=hashes,
        serialization=serialization,
        ec=ec,
        padding=padding,
        rsa=rsa,
        utils=utils,
    )


def load_public_key(pem: bytes, *, name: str = "public key") -> Any:
    """A PEM public key (EC P-256 or RSA); a private key is accepted and only its public half kept."""
    crypto = _crypto()
    try:
        key = crypto.serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            key = crypto.serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise Failure(f"{name} is not a PEM public key: {exc}", EXIT_USAGE) from exc
    if isinstance(key, crypto.ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, crypto.ec.SECP256R1):
            raise Failure(f"{name}: an EC key must be on P-256 (ES256), not {key.curve.name}", EXIT_USAGE)
    elif not isinstance(key, crypto.rsa.RSAPublicKey):
        raise Failure(f"{name}: only EC P-256 (ES256) and RSA (RS256) keys sign portal files", EXIT_USAGE)
    return key


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_jws(token: str, keys: list[Any]) -> dict[str, Any]:
    """The claims of a compact JWS if one of ``keys`` signed it (alg pinned to the key's type)."""
    crypto = _crypto()
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(_b64(parts[0]))
        signature = _b64(parts[2])
    except ValueError as exc:
        raise ValueError(f"malformed JWS: {exc}") from exc
    alg = header.get("alg") if isinstance(header, dict) else None
    if alg not in ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} is not accepted (ES256 or RS256)")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    for key in keys:
        try:
            if alg == "ES256" and isinstance(key, crypto.ec.EllipticCurvePublicKey):
                if len(signature) != 64:
                    continue
                der = crypto.utils.encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                key.verify(der, signed, crypto.ec.ECDSA(crypto.hashes.SHA256()))
            elif alg == "RS256" and isinstance(key, crypto.rsa.RSAPublicKey):
                key.verify(signature, signed, crypto.padding.PKCS1v15(), crypto.hashes.SHA256())
            else:
                continue
        except crypto.InvalidSignature:
            continue
        try:
            claims = json.loads(_b64(parts[1]))
        except ValueError as exc:
            raise ValueError(f"the signed payload is not JSON: {exc}") from exc
        if not isinstance(claims, dict):
            raise ValueError("the signed payload is not a JSON object")
        return claims
    raise ValueError(f"the {alg} signature does not verify with the given public key(s)")


# --- the tree -----------------------------------------------------------------------


@dataclass
class Report:
    checked: int = 0
    checkpoints: int = 0
    allowed: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)
    revision: str = ""
    roots: set[str] = field(default_factory=set)  # the top-level entries the portal owns

    def fail(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(root: Path) -> list[tuple[str, Path]]:
    """Every entry of the checkout that is not a directory (``.git`` at the top left out), by posix path."""
    found: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(directory)
        if here == root:
            dirnames[:] = [d for d in dirnames if d != ".git"]
            filenames = [f for f in filenames if f != ".git"]  # a worktree's .git file
        for name in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            path = here / name
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _safe(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "." not in pure.parts


def signed_files(root: Path, keys: list[Any], report: Report) -> dict[str, str] | None:
    """Path -> SHA-256 of every file the signature covers (None when MANIFEST.json itself was edited)."""
    signature_path = root / MANIFEST_SIGNATURE
    if not signature_path.is_file():
        raise Failure(f"{MANIFEST_SIGNATURE} is missing: this tree is not signed by the portal", EXIT_SIGNATURE)
    try:
        claims = verify_jws(signature_path.read_text(encoding="ascii"), keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Failure(f"{MANIFEST_SIGNATURE}: {exc}", EXIT_SIGNATURE) from exc
    listed = claims.get("files")
    if claims.get("type") != TREE_TYPE or not isinstance(listed, dict) or claims.get("manifest") != MANIFEST:
        raise Failure(f"{MANIFEST_SIGNATURE}: the signed claims are not a bundle tree signature", EXIT_SIGNATURE)
    report.revision = str(claims.get("revision", ""))
    roots = claims.get("roots", [])
    report.roots = {root for root in roots if isinstance(root, str)} if isinstance(roots, list) else set()
    manifest_path = root / MANIFEST
    if MANIFEST not in listed:
        raise Failure(f"{MANIFEST_SIGNATURE}: the signed claims do not list {MANIFEST}", EXIT_SIGNATURE)
    if not manifest_path.is_file() or manifest_path.is_symlink():
        report.fail(MANIFEST, "removed (signed, not in the checkout); the files it lists cannot be checked")
        return None
    if _sha256(manifest_path) != listed[MANIFEST]:
        report.fail(MANIFEST, "edited (its SHA-256 is not the signed one); the files it lists cannot be checked")
        return None
    try:
        manifest_files = json.loads(manifest_path.read_bytes())["files"]
        if not isinstance(manifest_files, dict):
            raise TypeError("'files' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise Failure(f"{MANIFEST} is signed but has no file list: {exc}", EXIT_SIGNATURE) from exc
    expected = {**manifest_files, **listed}
    for path, sha in expected.items():
        if not isinstance(path, str) or not _safe(path) or not isinstance(sha, str):
            raise Failure(f"the signed file list holds an invalid entry {path!r}", EXIT_SIGNATURE)
    return expected


def check_checkpoint(path: str, file: Path, keys: list[Any]) -> str:
    """'' when the file is an audit checkpoint signed by one of ``keys``; otherwise what is wrong."""
    try:
        document = json.loads(file.read_bytes())
    except ValueError as exc:
        return f"not a checkpoint: not JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("jws"), str):
        return "not a checkpoint: no signature (jws)"
    try:
        claims = verify_jws(document["jws"], keys)
    except ValueError as exc:
        return f"checkpoint forged or signed by another key ({exc})"
    if claims.get("type") != CHECKPOINT_TYPE or not isinstance(claims.get("seq"), int):
        return "the signed claims are not an audit checkpoint"
    for key in ("type", "seq", "head_hash", "time"):
        if document.get(key) != claims.get(key):
            return f"checkpoint edited: the clear-text {key} differs from the signed one"
    # A signed checkpoint copied elsewhere, or carrying more keys (a Kubernetes object, say), is
    # not one the portal wrote: a GitOps tool reading the tree would apply what it carries.
    if extra := sorted(set(document) - set(CHECKPOINT_KEYS)):
        return f"not a checkpoint the portal wrote: unexpected keys {', '.join(map(repr, extra))}"
    if not isinstance(document.get("key_id", ""), str):
        return "not a checkpoint the portal wrote: key_id is not a string"
    if path != f"{CHECKPOINT_DIR}/{claims['seq']:012d}.json":
        return (
            f"checkpoint moved or renamed: #{claims['seq']} belongs at "
            f"{CHECKPOINT_DIR}/{claims['seq']:012d}.json, not {path}"
        )
    return ""


def verify(
    root: Path, keys: list[Any], *, checkpoint_keys: list[Any] | None = None, allow: tuple[str, ...] = ()
) -> Report:
    """Check the checkout at ``root`` (the directory holding MANIFEST.json) against its signature."""
    if not root.is_dir():
        raise Failure(f"{root} is not a directory", EXIT_USAGE)
    report = Report()
    expected = signed_files(root, keys, report)
    present = _walk(root)
    if expected is None:
        return report
    # A top-level entry the portal owns or signs: nothing unsigned is allowed in it.
    signed_roots = {path.split("/", 1)[0] for path in expected} | {MANIFEST_SIGNATURE} | report.roots
    seen: set[str] = set()
    for path, file in present:
        if path == MANIFEST_SIGNATURE:
            continue
        mode = file.lstat().st_mode
        if not stat.S_ISREG(mode):
            report.fail(path, "not a regular file (a symbolic link or special file); the portal writes none")
            seen.add(path)
            continue
        if path in expected:
            seen.add(path)
            report.checked += 1
            if _sha256(file) != expected[path]:
                report.fail(path, "edited (its SHA-256 is not the signed one)")
        elif path.startswith(CHECKPOINT_DIR + "/"):
            problem = check_checkpoint(path, file, checkpoint_keys or keys)
            if problem:
                report.fail(path, problem)
            else:
                report.checkpoints += 1
        elif path.split("/", 1)[0] not in signed_roots and any(fnmatch.fnmatchcase(path, p) for p in allow):
            report.allowed.append(path)
        else:
            report.fail(path, "added (not in the signed manifest)")
    for path in sorted(expected.keys() - seen):
        report.fail(path, "removed (signed, not in the checkout)")
    report.problems.sort()
    return report


# --- the command line ---------------------------------------------------------------


def read_keys(paths: list[str], option: str) -> list[Any]:
    keys = []
    for name in paths:
        try:
            pem = Path(name).read_bytes()
        except OSError as exc:
            raise Failure(f"{option} {name}: cannot read it ({exc.strerror or exc})", EXIT_USAGE) from exc
        keys.append(load_public_key(pem, name=f"{option} {name}"))
    return keys


def print_report(report: Report, root: Path, out: TextIO) -> int:
    """The report as lines a CI log shows; returns the exit code."""
    for path, problem in report.problems:
        out.write(f"FAIL {path}: {problem}\n")
    for path in report.allowed:
        out.write(f"note {path}: not signed by the portal (allowed by --allow)\n")
    summary = (
        f"{report.checked} signed files, {report.checkpoints} audit checkpoints, "
        f"{len(report.allowed)} unsigned allowed, {len(report.problems)} problems"
    )
    revision = f" (bundle revision {report.revision})" if report.revision else ""
    if report.problems:
        out.write(f"egress-verify: {root} does NOT match the portal's signature{revision}: {summary}\n")
        return EXIT_MISMATCH
    out.write(f"egress-verify: {root} matches the portal's signature{revision}: {summary}\n")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egress-verify",
        description=(
            "Check a checkout of the Egress Portal's policy repository against the portal's signature "
            "(MANIFEST.sig): every file edited, added or removed since the portal signed the tree is named. "
            "Audit checkpoints under audit/checkpoints/ are verified with their own signatures. "
            "Needs Python 3.11+ and the 'cryptography' package (pip install cryptography); nothing else."
        ),
        epilog=(
            "exit codes: 0 verified; 1 a file edited, added or removed, or a checkpoint that does not verify; "
            "2 usage (arguments, directory, key, 'cryptography' missing); "
            "3 MANIFEST.sig missing, malformed or not signed by the key. "
            "Keep the public key outside the repository being verified (a CI variable or a protected file)."
        ),
    )
    parser.add_argument("directory", type=Path, help="the checkout: the directory that holds MANIFEST.json")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE",
        help="the portal's public key, PEM (`manage.py bundle_signing_key`); repeat during a key rotation. "
        "Default: $EGRESS_VERIFY_PUBLIC_KEY_FILE",
    )
    parser.add_argument(
        "--checkpoint-public-key",
        action="append",
        default=[],
        metavar="FILE",
        help="the key audit checkpoints are signed with, if not the bundle key (repeatable)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="GLOB",
        help="unsigned paths to accept, such as '.github/*' or README.md ('*' crosses '/'); "
        "never applies under a directory the portal signs (cilium/, opa/, teams/, ...)",
    )
    return parser


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        key_files = args.public_key or (
            [os.environ["EGRESS_VERIFY_PUBLIC_KEY_FILE"]] if os.environ.get("EGRESS_VERIFY_PUBLIC_KEY_FILE") else []
        )
        if not key_files:
            raise Failure(
                "give the portal's public key: --public-key FILE (or EGRESS_VERIFY_PUBLIC_KEY_FILE)", EXIT_USAGE
            )
        keys = read_keys(key_files, "--public-key")
        checkpoint_keys = read_keys(args.checkpoint_public_key, "--checkpoint-public-key") or None
        report = verify(args.directory, keys, checkpoint_keys=checkpoint_keys, allow=tuple(args.allow))
    except Failure as exc:
        err.write(f"egress-verify: {exc}\n")
        return exc.code
    return print_report(report, args.directory, out)


if __name__ == "__main__":
    sys.exit(main())
