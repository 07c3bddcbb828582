"""Verifying an export file offline: its chain, the signed checkpoint in its header, and that it is whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from audit.checkpoints import InvalidCheckpoint, parse_checkpoint
from audit.verification import VerificationResult, read_export, walk, walk_filtered


def verify_export(path: Path, *, public_pems: Sequence[str] = (), require_anchor: bool = True) -> VerificationResult:
    """Verify an export file offline: the chain, its checkpoint's signature, and that the file is whole.

    Fails closed: an export without its header (which says how far it runs and carries the
    signed checkpoint), or whose header has no checkpoint, cannot be shown whole or anchored,
    so it fails unless ``require_anchor`` is False (``verify_audit --no-anchors``).
    """
    header, records = read_export(path)
    if header is None:
        if require_anchor:
            return VerificationResult(
                False,
                0,
                None,
                "the export has no header with a signed checkpoint: neither where it ends nor what anchors it "
                "can be checked (--no-anchors checks the events against each other only)",
            )
        return replace(walk(records), notes=("An export without a header: not anchored to any checkpoint.",))
    if require_anchor and not header.get("checkpoint"):
        return VerificationResult(
            False,
            0,
            None,
            "the export's header carries no signed checkpoint (none had been written when it was made): nothing "
            "anchors it (--no-anchors checks it against itself only)",
        )
    anchor = None
    if header.get("checkpoint"):
        try:
            anchor = parse_checkpoint(header["checkpoint"], path="in the export header", public_pems=public_pems)
        except InvalidCheckpoint as exc:
            return VerificationResult(False, 0, None, f"{exc} (forged or edited checkpoint)")
    through = int(header.get("through_seq", 0))
    notes: tuple[str, ...] = ()
    if header.get("filters"):
        result = walk_filtered(records, anchor=anchor)
        notes = (
            f"A filtered export ({header['filters']}): each event matches its own hash; "
            "the chain between them needs the full export.",
        )
    else:
        result = walk(records, anchors=[anchor] if anchor else [])
        if result.ok and result.checked != through:
            return replace(
                result,
                ok=False,
                broken_seq=result.checked + 1,
                problem=f"the file ends at #{result.checked} but its header says it runs through #{through} "
                "(truncated export)",
            )
    if anchor is None:
        notes += ("No checkpoint had been written when this export was made: the chain is not anchored.",)
    elif result.ok and anchor.seq < through:
        notes += (f"Events #{anchor.seq + 1}..#{through} come after the checkpoint and are not anchored yet.",)
    full = not header.get("filters")
    return replace(result, notes=notes, anchored_seq=anchor.seq if anchor and result.ok and full else 0)
