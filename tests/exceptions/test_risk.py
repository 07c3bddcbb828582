from __future__ import annotations

from datetime import timedelta

import pytest

from exceptions.risk import LifetimeCaps, assess_risk


def _assess(**overrides: object):
    values: dict[str, object] = {
        "environment": "dev",
        "data_class": "internal",
        "wildcard": False,
        "purpose": "partner_api",
        "lifetime": timedelta(days=7),
    }
    values.update(overrides)
    return assess_risk(**values)


@pytest.mark.parametrize(
    ("overrides", "tier", "reason_fragment"),
    [
        ({}, "low", "non-production"),
        ({"data_class": "public"}, "low", "non-production"),
        ({"environment": "prod"}, "medium", "production workload"),
        ({"data_class": "confidential"}, "medium", "confidential data"),
        ({"wildcard": True}, "medium", "wildcard"),
        ({"purpose": "other"}, "medium", "purpose 'other'"),
        ({"data_class": "restricted"}, "high", "restricted data"),
        ({"environment": "prod", "data_class": "confidential"}, "high", "confidential data from a production"),
        ({"environment": "prod", "wildcard": True}, "high", "wildcard destination from a production"),
        ({"environment": "staging", "data_class": "restricted"}, "high", "restricted"),
    ],
)
def test_tier_and_reasons(overrides: dict[str, object], tier: str, reason_fragment: str) -> None:
    result = _assess(**overrides)
    assert result.tier == tier
    assert any(reason_fragment in reason for reason in result.reasons), result.reasons


@pytest.mark.parametrize(
    ("overrides", "cap"), [({}, 90), ({"environment": "prod"}, 30), ({"data_class": "restricted"}, 7)]
)
def test_lifetime_cap_follows_the_tier(overrides: dict[str, object], cap: int) -> None:
    assert _assess(**overrides).lifetime_cap == timedelta(days=cap)


def test_diagnostics_is_capped_at_24_hours_whatever_the_tier() -> None:
    result = _assess(purpose="diagnostics", lifetime=timedelta(hours=48))
    assert result.lifetime_cap == timedelta(hours=24)
    assert not result.within_cap
    assert any("24 hours" in reason for reason in result.reasons)


def test_a_long_lifetime_is_flagged_not_escalated() -> None:
    result = _assess(lifetime=timedelta(days=120))
    assert result.tier == "low"
    assert not result.within_cap
    assert any("exceeds the 90 days cap" in reason for reason in result.reasons)


def test_caps_are_configurable() -> None:
    caps = LifetimeCaps(
        low=timedelta(days=10), medium=timedelta(days=5), high=timedelta(days=1), diagnostics=timedelta(hours=2)
    )
    assert _assess(caps=caps).lifetime_cap == timedelta(days=10)
    assert _assess(caps=caps, environment="prod", wildcard=True).lifetime_cap == timedelta(days=1)
    assert _assess(caps=caps, purpose="diagnostics").lifetime_cap == timedelta(hours=2)


def test_high_tier_reasons_do_not_repeat_what_they_explain() -> None:
    result = _assess(environment="prod", data_class="confidential", purpose="other")
    assert result.reasons == ("confidential data from a production workload", "purpose 'other' needs a closer read")
