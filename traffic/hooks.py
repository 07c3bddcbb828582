"""What ingestion tells the layers above it (outcomes registers in ``OutcomesConfig.ready``).

- ``engine_revisions_seen``: an engine reported bundle revisions for the first
  time ({revision: first seen}); outcomes observes the time to policy update.
  Runs inside the ingestion transaction, in a savepoint: a metrics error is
  logged and never loses the batch.
"""

from __future__ import annotations

from datetime import datetime

from foundation.hooks import Hook

engine_revisions_seen: Hook[[dict[str, datetime]], object] = Hook("engine_revisions_seen", observer=True)
