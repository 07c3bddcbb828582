"""Change windows and freezes: when an approved change may go live.

A window is an RFC 5545 RRULE (python-dateutil) expanded in its IANA time zone
from a wall-clock first start, so "Tuesdays 02:00 Europe/Berlin" stays 02:00
local on both sides of a DST change. A freeze blocks going live, not approving.

``Calendar`` is pure (windows and freezes are handed in), so the dashboard can
compute go-live times for a page of requests from two queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import dateformat, timezone

from approvals.models import ChangeWindow, Freeze


def parse_rrule(text: str, *, dtstart: datetime) -> rrule:
    """The recurrence of ``text`` (an RRULE line, with or without the ``RRULE:`` prefix)."""
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body:
        raise ValidationError({"rrule": ["Give a recurrence, for example FREQ=WEEKLY;BYDAY=TU."]})
    if any(part.upper().startswith(("DTSTART", "TZID")) for part in body.split(";")):
        raise ValidationError({"rrule": ["Put the first start and time zone in their own fields, not in the RRULE."]})
    try:
        rule = rrulestr(f"RRULE:{body}", dtstart=dtstart)
    except (ValueError, TypeError) as exc:
        raise ValidationError({"rrule": [f"Not an RFC 5545 RRULE ({exc}); for example FREQ=WEEKLY;BYDAY=TU."]}) from exc
    assert isinstance(rule, rrule)
    return rule


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError({"time_zone": [f"{name!r} is not an IANA time zone such as Europe/Berlin."]}) from exc


@dataclass(frozen=True)
class GoLive:
    """When a request approved now would go live, and why then."""

    at: datetime | None
    reason: str
    window: str = ""

    def as_dict(self) -> dict[str, object]:
        # at_display is the portal's one way of writing a time (the pages' "D Y-m-d H:i T"), for scripts to show as is.
        return {
            "at": self.at.isoformat() if self.at else None,
            "at_display": dateformat.format(timezone.localtime(self.at), "D Y-m-d H:i T") if self.at else None,
            "reason": self.reason,
            "window": self.window,
        }


def _fmt(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%a %Y-%m-%d %H:%M} {tz.key}"


@dataclass
class Calendar:
    windows: Sequence[ChangeWindow]
    freezes: Sequence[Freeze]
    horizon: timedelta = field(default_factory=lambda: timedelta(days=settings.EGRESS_CHANGE_WINDOW_HORIZON_DAYS))
    _memo: dict[tuple[str, datetime], GoLive] = field(default_factory=dict)

    def freezes_for(self, environment: str) -> list[Freeze]:
        return [f for f in self.freezes if environment in f.environments]

    def _occurrences(self, window: ChangeWindow, after: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) in UTC of each occurrence that has not ended by ``after``."""
        rule = parse_rrule(window.rrule, dtstart=window.local_dtstart())
        current = rule.before(after, inc=True)
        if current is not None and current.astimezone(UTC) + window.duration > after:
            yield current.astimezone(UTC), current.astimezone(UTC) + window.duration
        moment = after
        limit = after + self.horizon
        while True:
            nxt = rule.after(moment, inc=False)
            if nxt is None or nxt > limit:
                return
            start = nxt.astimezone(UTC)
            yield start, start + window.duration
            moment = nxt

    def _first_unfrozen(self, start: datetime, end: datetime, freezes: Iterable[Freeze]) -> datetime | None:
        """The first moment in [start, end) not inside a freeze."""
        moved = True
        while moved:
            moved = False
            for freeze in freezes:
                if freeze.starts_at <= start < freeze.ends_at:
                    start = freeze.ends_at
                    moved = True
        return start if start < end else None

    def unfrozen(self, environment: str, after: datetime) -> GoLive:
        """The first moment at or after ``after`` outside every freeze of ``environment`` (no window needed)."""
        freezes = self.freezes_for(environment)
        at = self._first_unfrozen(after, datetime.max.replace(tzinfo=UTC), freezes)
        assert at is not None
        if at == after:
            return GoLive(at=at, reason="no freeze applies")
        last = max((f for f in freezes if f.ends_at == at), key=lambda f: f.ends_at)
        return GoLive(at=at, reason=f"freeze until {at:%Y-%m-%d %H:%M} UTC: {last.reason}")

    def next_window(self, environment: str, after: datetime) -> GoLive:
        """The first moment at or after ``after`` inside an open window for ``environment`` and no freeze."""
        key = (environment, after)
        if key in self._memo:
            return self._memo[key]
        freezes = self.freezes_for(environment)
        best: tuple[datetime, ChangeWindow] | None = None
        for window in self.windows:
            if environment not in window.environments:
                continue
            for start, end in self._occurrences(window, after):
                if best is not None and start >= best[0]:
                    break
                at = self._first_unfrozen(max(start, after), end, freezes)
                if at is not None:
                    if best is None or at < best[0]:
                        best = (at, window)
                    break
        if best is None:
            result = GoLive(
                at=None,
                reason=f"no change window for {environment} opens in the next {self.horizon.days} days "
                "outside a freeze; ask the security team to add one",
            )
        else:
            at, window = best
            tz = window.zone
            reason = f"next window {window.name}: {_fmt(at, tz)}" if at > after else f"window {window.name} is open now"
            blocking = [f for f in freezes if f.ends_at == at]
            if blocking:
                reason += f" (freeze until {_fmt(blocking[0].ends_at, tz)}: {blocking[0].reason})"
            else:
                skipped = [f for f in freezes if after <= f.ends_at <= at and f.ends_at > f.starts_at]
                if skipped:
                    reason += f" (after freeze until {_fmt(skipped[-1].ends_at, tz)}: {skipped[-1].reason})"
            result = GoLive(at=at, reason=reason, window=window.name)
        self._memo[key] = result
        return result


def load_calendar(now: datetime) -> Calendar:
    """Every window and the freezes not yet over at ``now``: two queries."""
    return Calendar(windows=list(ChangeWindow.objects.all()), freezes=list(Freeze.objects.filter(ends_at__gt=now)))


def frozen_at(calendar: Calendar, environment: str, at: datetime) -> Freeze | None:
    for freeze in calendar.freezes_for(environment):
        if freeze.starts_at <= at < freeze.ends_at:
            return freeze
    return None


def frozen_environments(now: datetime) -> frozenset[str]:
    """Environments under a freeze at ``now``."""
    rows = Freeze.objects.filter(starts_at__lte=now, ends_at__gt=now).values_list("environments", flat=True)
    return frozenset(env for envs in rows for env in envs)
