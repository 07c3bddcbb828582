"""Fixtures of the bundle tests that publish through the outbox, as production does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def publishing(policy_repo: Path, settings: Any) -> Path:
    """Grant changes queue a publish the relay delivers at once (``relay_due()``)."""
    settings.EGRESS_AUTO_PUBLISH = True
    settings.BUNDLE_PUBLISH_DELAY_SECONDS = 0
    return policy_repo
