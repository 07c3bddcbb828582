"""Building the image: ``collectstatic`` with production's static storage and no secrets.

The Dockerfile runs this at build time, when no secret exists (and none
belongs in an image layer); production's settings refuse to start without
them, so they cannot be the ones used here.
"""

from __future__ import annotations

from egress_portal.settings.base import *  # noqa: F403
from egress_portal.settings.base import PRODUCTION_STORAGES

SECRET_KEY = "build-only-not-secret"  # noqa: S105 - never serves a request
STORAGES = PRODUCTION_STORAGES
