"""Audit checkpoints: the chain's head, signed and written outside the database.

A checkpoint is a file ``audit/checkpoints/<seq>.json`` on the policy
repository's branch holding the sequence number, the head hash at that number,
the time, and a compact JWS over those claims made with the portal's key
(``foundation/signing.py``). Someone who can rewrite the audit table (and
recompute every hash and the chain head) cannot rewrite what was pushed, so
``verify_audit`` names the first checkpoint the table contradicts.

``audit.checkpoint_git`` (GitPython and, through the policy repository, pygit2:
about 13 MB resident) is imported where the repository is touched, so a process
that only exports or reads checkpoints from the database never loads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from audit.hashing import GENESIS_HASH
from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.sealing import audit_keys
from audit.services import SYSTEM, Actor, record_event
from audit.verification import database_records, head_seal_problem, walk
from foundation import signing
from foundation.locks import named_lock
from foundation.outbox.services import enqueue_coalesced

if TYPE_CHECKING:
    from audit.checkpoint_git import CheckpointRepo

CHECKPOINT_TYPE = "egress-portal.audit-checkpoint"
# Exactly the keys of a checkpoint file (Checkpoint.document); tools/egress-verify holds the same list.
CHECKPOINT_KEYS = ("type", "seq", "head_hash", "time", "key_id", "jws")
CHECKPOINT_ACTION = "audit.checkpoint_written"
# The outbox kind of "write a checkpoint soon", and the key every request for one shares.
CHECKPOINT_KIND = "audit.checkpoint"
CHECKPOINT_KEY = "audit.checkpoint:pending"


class CheckpointRefused(Exception):
    """The chain in the database does not extend the last checkpoint; signing it would bless tampering."""


class InvalidCheckpoint(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"checkpoint {path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    time: str
    key_id: str
    jws: str
    path: str

    def document(self) -> dict[str, Any]:
        """The file's JSON: the claims in the clear for people, the JWS for proof."""
        return {
            "type": CHECKPOINT_TYPE,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "time": self.time,
            "key_id": self.key_id,
            "jws": self.jws,
        }

    def describe(self) -> str:
        return f"{self.path} (#{self.seq}, {self.time})"


def _claims(seq: int, head_hash: str, time: str) -> dict[str, Any]:
    return {"type": CHECKPOINT_TYPE, "seq": seq, "head_hash": head_hash, "time": time}


def sign_checkpoint(*, seq: int, head_hash: str, at: datetime) -> Checkpoint:
    from audit.checkpoint_git import checkpoint_path

    time = at.astimezone(UTC).isoformat()
    return Checkpoint(
        seq=seq,
        head_hash=head_hash,
        time=time,
        key_id=signing.key_id(),
        jws=signing.sign_jws(_claims(seq, head_hash, time)),
        path=checkpoint_path(seq),
    )


def parse_checkpoint(document: dict[str, Any], *, path: str, public_pems: Sequence[str] = ()) -> Checkpoint:
    """The checkpoint if its signature verifies and the clear-text fields say what was signed.

    ``public_pems`` verify with published public keys (offline, or after a key
    rotation: any one of them may have signed); by default the portal's own key is used.
    """
    from audit.checkpoint_git import checkpoint_path

    jws = document.get("jws")
    if not isinstance(jws, str):
        raise InvalidCheckpoint(path, "has no signature (jws)")
    claims: dict[str, Any] | None = None
    problem = ""
    keys: Sequence[str | None] = public_pems or [None]  # None: the portal's own key
    for public_pem in keys:
        try:
            claims = signing.verify_jws(jws, public_pem=public_pem)
            break
        except ValueError as exc:
            problem = str(exc)
    if claims is None:
        raise InvalidCheckpoint(path, f"forged or signed by another key ({problem})")
    if claims.get("type") != CHECKPOINT_TYPE or not isinstance(claims.get("seq"), int):
        raise InvalidCheckpoint(path, "the signed claims are not an audit checkpoint")
    for name in ("type", "seq", "head_hash", "time"):
        if document.get(name) != claims.get(name):
            raise InvalidCheckpoint(path, f"the clear-text {name} differs from the signed one (edited)")
    # A signed checkpoint carrying more (a Kubernetes object, say) or copied to another folder is
    # not one the portal wrote: a GitOps tool reading the tree would apply what it carries.
    if extra := sorted(set(document) - set(CHECKPOINT_KEYS)):
        raise InvalidCheckpoint(path, f"has keys a checkpoint never has: {', '.join(map(repr, extra))}")
    if not isinstance(document.get("key_id", ""), str):
        raise InvalidCheckpoint(path, "its key_id is not a string")
    if path.endswith(".json") and path != checkpoint_path(claims["seq"]):
        raise InvalidCheckpoint(
            path, f"#{claims['seq']} belongs at {checkpoint_path(claims['seq'])} (moved or renamed)"
        )
    return Checkpoint(
        seq=claims["seq"],
        head_hash=str(claims["head_hash"]),
        time=str(claims["time"]),
        key_id=str(document.get("key_id", "")),
        jws=jws,
        path=path,
    )


def checkpoint_repo(*, reader: bool = False) -> CheckpointRepo:
    from audit.checkpoint_git import CheckpointRepo

    work_dir = Path(settings.AUDIT_CHECKPOINT_WORK_DIR)
    if reader:
        # verify_audit fetches into its own clone, so it never races a writer's checkout.
        work_dir = work_dir.with_name(work_dir.name + "-read")
    return CheckpointRepo(
        url=settings.POLICY_REPO_URL,
        work_dir=work_dir,
        branch=settings.POLICY_REPO_BRANCH,
        author=(settings.POLICY_GIT_AUTHOR_NAME, settings.POLICY_GIT_AUTHOR_EMAIL),
        username=settings.POLICY_REPO_USERNAME,
        password=settings.POLICY_REPO_PASSWORD,
    )


def repository_checkpoints(*, public_pems: Sequence[str] = ()) -> tuple[list[Checkpoint], list[InvalidCheckpoint]]:
    """Every checkpoint on the policy branch, in chain order, and the ones that do not verify."""
    valid: list[Checkpoint] = []
    invalid: list[InvalidCheckpoint] = []
    repository = checkpoint_repo(reader=True)
    files = repository.read_all()
    deleted = {path: commit for path, commit in repository.deleted().items() if path not in files}
    for path, commit in sorted(deleted.items()):
        invalid.append(InvalidCheckpoint(path, f"was deleted from the repository in commit {commit[:12]}"))
    # The database's own list of what it pushed: a rewritten branch history loses files without a deletion.
    recorded = AuditCheckpoint.objects.exclude(path__in=[*files, *deleted]).order_by("seq")
    for path, commit in recorded.values_list("path", "commit"):
        invalid.append(InvalidCheckpoint(path, f"was pushed in commit {commit[:12]} but is not on the branch"))
    for path, data in sorted(files.items()):
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise InvalidCheckpoint(path, "is not a JSON object")
            valid.append(parse_checkpoint(document, path=path, public_pems=public_pems))
        except json.JSONDecodeError as exc:
            invalid.append(InvalidCheckpoint(path, f"is not JSON ({exc})"))
        except InvalidCheckpoint as exc:
            invalid.append(exc)
    return sorted(valid, key=lambda c: c.seq), invalid


def _assert_extends(base_seq: int, base_hash: str, head: AuditChainHead) -> None:
    """The events since the last checkpoint chain onto its hash, carry their seals and end at the sealed head row."""
    keys = audit_keys()
    records = database_records(after_seq=base_seq, through_seq=head.last_seq)
    result = walk(records, start_seq=base_seq + 1, start_hash=base_hash, keys=keys)
    if not result.ok:
        raise CheckpointRefused(f"audit chain broken at #{result.broken_seq}: {result.problem}")
    if result.checked != head.last_seq - base_seq or result.last_hash != head.last_hash:
        raise CheckpointRefused(f"the chain head (#{head.last_seq}) does not match the events")
    problem = head_seal_problem(keys, head)
    if problem:
        raise CheckpointRefused(problem)


def write_checkpoint(
    *, actor: Actor = SYSTEM, now: datetime | None = None, before_push: Callable[[int], None] | None = None
) -> AuditCheckpoint | None:
    """Sign the current head and push it to the policy repository; None when nothing new happened.

    The chain since the previous checkpoint is checked first, so a checkpoint
    never vouches for a table that was already rewritten. Events recording
    checkpoints do not call for another checkpoint (or an idle portal would
    write one every run, each recording the last).
    """
    with named_lock("audit-checkpoint"):
        head = AuditChainHead.objects.filter(pk=1).first()
        if head is None or head.last_seq == 0:
            return None
        last = AuditCheckpoint.objects.order_by("-seq").first()
        if last and not AuditEvent.objects.filter(seq__gt=last.seq).exclude(action=CHECKPOINT_ACTION).exists():
            return None
        _assert_extends(last.seq if last else 0, last.head_hash if last else GENESIS_HASH, head)
        checkpoint = sign_checkpoint(seq=head.last_seq, head_hash=head.last_hash, at=now or datetime.now(UTC))
        data = (json.dumps(checkpoint.document(), indent=2, sort_keys=True) + "\n").encode("utf-8")
        commit, on_branch = checkpoint_repo().add(
            checkpoint.path,
            data,
            message=f"Audit checkpoint #{checkpoint.seq}: head {checkpoint.head_hash[:12]}\n",
            before_push=before_push,
        )
        if on_branch != data:
            # An earlier run pushed this checkpoint and died before recording it: keep the pushed one.
            checkpoint = parse_checkpoint(json.loads(on_branch), path=checkpoint.path)
        with transaction.atomic():
            row = AuditCheckpoint.objects.create(
                seq=checkpoint.seq,
                head_hash=checkpoint.head_hash,
                created_at=datetime.fromisoformat(checkpoint.time),
                key_id=checkpoint.key_id,
                signature=checkpoint.jws,
                path=checkpoint.path,
                commit=commit,
            )
            record_event(
                actor=actor,
                action=CHECKPOINT_ACTION,
                obj=row,
                after={"seq": row.seq, "head_hash": row.head_hash, "commit": commit, "path": row.path},
            )
        return row


def queue_checkpoint(*, reason: str) -> None:
    """Ask for a checkpoint ``AUDIT_CHECKPOINT_DELAY_SECONDS`` from now, in the caller's
    transaction (the publish that changed the bundle). Coalesced: a burst of publishes re-arms
    one pending row, which keeps its earlier due time, so a steady stream still gets one."""
    with transaction.atomic():  # a savepoint inside the caller's; its own transaction alone
        enqueue_coalesced(
            kind=CHECKPOINT_KIND,
            payload={"reason": reason},
            idempotency_key=CHECKPOINT_KEY,
            delay_seconds=settings.AUDIT_CHECKPOINT_DELAY_SECONDS,
        )


def as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        time=row.created_at.astimezone(UTC).isoformat(),
        key_id=row.key_id,
        jws=row.signature,
        path=row.path,
    )
