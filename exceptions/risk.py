"""Risk tiering: a pure function from a request's intent to a tier and its reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from exceptions.choices import DataClass, Environment, Purpose, RiskTier


@dataclass(frozen=True)
class LifetimeCaps:
    low: timedelta = timedelta(days=90)
    medium: timedelta = timedelta(days=30)
    high: timedelta = timedelta(days=7)
    diagnostics: timedelta = timedelta(hours=24)

    def for_tier(self, tier: str) -> timedelta:
        return {RiskTier.LOW: self.low, RiskTier.MEDIUM: self.medium, RiskTier.HIGH: self.high}[RiskTier(tier)]


@dataclass(frozen=True)
class RiskAssessment:
    tier: str
    reasons: tuple[str, ...]
    lifetime_cap: timedelta
    within_cap: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "reasons": list(self.reasons),
            "lifetime_cap_hours": int(self.lifetime_cap.total_seconds() // 3600),
            "within_cap": self.within_cap,
        }


def assess_risk(
    *,
    environment: str,
    data_class: str,
    wildcard: bool,
    purpose: str,
    lifetime: timedelta | None,
    caps: LifetimeCaps | None = None,
) -> RiskAssessment:
    """Return the tier and the human-readable rules that put the request there.

    High: restricted data; production with confidential data; a production wildcard.
    Medium: any production workload; confidential data; any wildcard; purpose "other".
    Low: everything else. Diagnostics is capped at 24 h.

    The lifetime does not move the tier (a longer ask would then always exceed
    the lower cap of the higher tier); it is checked against the tier's cap and
    an excess is named among the reasons.
    """
    caps = caps or LifetimeCaps()
    prod = environment == Environment.PROD
    confidential = data_class == DataClass.CONFIDENTIAL
    # (applies, reason, the medium factors a high rule already explains)
    high_rules = [
        (data_class == DataClass.RESTRICTED, "restricted data leaves the network", set()),
        (prod and confidential, "confidential data from a production workload", {"prod", "confidential"}),
        (prod and wildcard, "a wildcard destination from a production workload", {"prod", "wildcard"}),
    ]
    medium_rules = {
        "prod": (prod, "production workload"),
        "confidential": (confidential, "confidential data"),
        "wildcard": (wildcard, "wildcard destination (*.domain)"),
        "other": (purpose == Purpose.OTHER, "purpose 'other' needs a closer read"),
    }
    high = [(reason, covered) for applies, reason, covered in high_rules if applies]
    explained = set().union(*(covered for _, covered in high)) if high else set()
    medium = [reason for key, (applies, reason) in medium_rules.items() if applies and key not in explained]
    if high:
        tier, reasons = RiskTier.HIGH, [reason for reason, _ in high] + medium
    elif medium:
        tier, reasons = RiskTier.MEDIUM, medium
    else:
        tier, reasons = RiskTier.LOW, ["non-production or public/internal data, exact hosts, short lifetime"]
    cap = caps.for_tier(tier)
    if purpose == Purpose.DIAGNOSTICS:
        cap = min(cap, caps.diagnostics)
        reasons = [*reasons, f"diagnostics access is capped at {int(caps.diagnostics.total_seconds() // 3600)} hours"]
    within_cap = lifetime is None or lifetime <= cap
    if not within_cap and lifetime is not None:
        reasons = [*reasons, f"the requested {format_duration(lifetime)} exceeds the {format_duration(cap)} cap"]
    return RiskAssessment(str(tier), tuple(reasons), cap, within_cap)


def format_duration(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"
