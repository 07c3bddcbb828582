"""Audit export of 1,000,000 events: time and peak memory (target <= 100 MB).

The export runs in a fresh child process, so the peak resident size it reports
is the export's own and not the million-event fill's. Run through bench/run.py
(``audit_export``), which sets up Django on the bench database first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 50_000


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB (Linux).

    Not ``ru_maxrss``: Linux carries that across exec, so a child would report
    the parent's million-event fill as its own peak.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def fill(events: int) -> None:
    """Top the chain up to ``events`` events with the real writer (COPY in batches)."""
    from django.db import transaction

    from audit.models import AuditChainHead
    from audit.services import SYSTEM, PendingEvent, record_events

    head = AuditChainHead.objects.filter(pk=1).first()
    have = head.last_seq if head else 0
    started = time.perf_counter()
    while have < events:
        size = min(BATCH, events - have)
        with transaction.atomic():
            record_events(
                [
                    PendingEvent(
                        actor=SYSTEM,
                        action="grant.expired" if i % 3 else "request.approved",
                        object_type="exceptions.grant",
                        object_id=str(have + i),
                        before={"status": "active"},
                        after={"status": "expired", "reason": "lifetime ended"},
                        reason="bench",
                    )
                    for i in range(size)
                ]
            )
        have += size
    print(f"audit events: {have:,} (filled in {time.perf_counter() - started:.1f} s)")


def measure(fmt: str, out: str) -> None:
    """Child process: stream one export to ``out`` and print time and memory."""
    import django

    django.setup()
    from audit.exports import ExportFilters, csv_lines, jsonl_lines

    render = jsonl_lines if fmt == "jsonl" else csv_lines
    baseline = _status_mb("VmRSS")
    started = time.perf_counter()
    size = 0
    with open(out, "w", encoding="utf-8") as handle:
        for chunk in render(ExportFilters()):
            handle.write(chunk)
            size += len(chunk)
    elapsed = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    print(
        f"export {fmt:>5}: {elapsed:.1f} s, {size / 2**20:.0f} MB written, process peak {peak:.0f} MB "
        f"(Django alone {baseline:.0f} MB, so the export added {peak - baseline:.0f} MB; target peak <= 100 MB)"
    )


def bench_audit_export(events: int = 1_000_000) -> None:
    from audit.export_verification import verify_export

    fill(events)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("jsonl", "csv"):
            out = f"{tmp}/audit.{fmt}"
            subprocess.run(
                [sys.executable, str(Path(__file__)), "--measure", fmt, out], check=True, env=os.environ.copy()
            )
            started = time.perf_counter()
            result = verify_export(Path(out))
            print(
                f"verify_audit --export {fmt}: {time.perf_counter() - started:.1f} s, "
                f"{'intact' if result.ok else 'BROKEN ' + result.problem}, {result.checked:,} events"
            )


if __name__ == "__main__" and sys.argv[1:2] == ["--measure"]:
    sys.path.insert(0, str(ROOT))
    measure(sys.argv[2], sys.argv[3])
