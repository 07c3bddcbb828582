"""Settings of the gunicorn the poll benchmark starts: the test settings, static files as production serves them.

WhiteNoise serves the collected files of ``BENCH_STATIC_ROOT`` from memory-mapped
file handles found once at start-up (the test settings look files up per request).
"""

from __future__ import annotations

import os
from pathlib import Path

from egress_portal.settings.test import *  # noqa: F403

STATIC_ROOT = Path(os.environ["BENCH_STATIC_ROOT"])
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False
