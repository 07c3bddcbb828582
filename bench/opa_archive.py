"""The OPA archive cache key: the content revision of the open grants, per poll.

Target: the cache-hit path (digest of the grants' contents) costs <= 20 % of a
compile at 100k grants, so keying on content keeps polling cheap. The compile
it is compared with is a full ``compile_bundle`` (what a miss costs), never an
incremental one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def bench_opa_archive_key() -> None:
    from bench.run import _records
    from bundle.compiler import compile_bundle
    from bundle.content_key import content_revision
    from exceptions.selectors import bundle_options

    now = datetime.now(UTC)
    for count in (10_000, 100_000):
        records = _records(count, now)
        options = bundle_options()
        key = compile_time = float("inf")
        # Best of three interleaved rounds each: the 2-core machine is shared, and the
        # minimum is the figure least disturbed by other work.
        for _ in range(3):
            started = time.perf_counter()
            content_revision(records, now=now, options=options)
            key = min(key, time.perf_counter() - started)
            started = time.perf_counter()
            compile_bundle(records, now=now)
            compile_time = min(compile_time, time.perf_counter() - started)
        print(
            f"opa archive key {count:>7,} grants: {key * 1000:.0f} ms digest vs {compile_time * 1000:.0f} ms "
            f"full compile (best of 3 each; {key / compile_time:.0%}; target <= 20 % at 100k)"
        )
