"""Writing an audit checkpoint onto a branch that carries a 100,000-file bundle.

The writer never checks the bundle out (it builds the commit from the branch's
tree plus one blob), so the time should not grow with the bundle. No Django.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from audit.checkpoint_git import CheckpointRepo, checkpoint_path


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def bench_audit_checkpoint(files: int = 100_000) -> None:
    # A detached `git gc --auto` may still be writing the clone when the benchmark ends.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        remote, seed = root / "policy.git", root / "seed"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
        for n in range(files):
            folder = seed / "cilium" / f"ns{n % 100}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"policy-{n}.yaml").write_text(f"grant: {n}\n")
        _git("add", "-A", cwd=seed)
        _git("-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "bundle", cwd=seed)
        _git("push", "-q", str(remote), "main", cwd=seed)
        writer = CheckpointRepo(url=str(remote), work_dir=root / "checkpoint-work")
        timings = []
        for seq in (1, 2, 3):
            started = time.perf_counter()
            writer.add(checkpoint_path(seq), b'{"seq": %d}\n' % seq, message=f"Audit checkpoint #{seq}")
            timings.append(time.perf_counter() - started)
    print(
        f"audit checkpoint onto a {files:,}-file branch: first {timings[0]:.2f} s (includes the first fetch), "
        f"then {timings[1]:.2f} s and {timings[2]:.2f} s"
    )
