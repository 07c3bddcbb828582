from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from audit.services import SYSTEM
from traffic.models import EgressGateway
from traffic.services.gateways import create_gateway
from traffic.services.ingest import IngestResult, ingest_flows


@pytest.fixture
def gateway_and_token(db: Any, team: Any) -> tuple[EgressGateway, str]:
    return create_gateway(actor=SYSTEM, name="eu-proxy", kind="proxy", environment="staging", owner_team=team)


@pytest.fixture
def gateway(gateway_and_token: tuple[EgressGateway, str]) -> EgressGateway:
    return gateway_and_token[0]


def flow(identity: str, host: str, port: int, verdict: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"identity": identity, "host": host, "port": port, "protocol": "tcp", "verdict": verdict,
            "time": at.isoformat(), **extra}  # fmt: skip


def report(gateway: EgressGateway, *records: dict[str, Any], now: datetime) -> IngestResult:
    return ingest_flows(gateway=gateway, records=list(records), now=now)
