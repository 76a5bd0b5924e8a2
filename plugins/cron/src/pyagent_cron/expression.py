"""Cron expressions evaluated in a time zone, correct across daylight-saving changes.

croniter does the calendar arithmetic on *wall-clock* times only (we hand it a zone without
DST); turning a wall time into an instant is done here, because that is where croniter alone
goes wrong: on a fall-back night it fires a repeated wall time twice. The rules:

- a wall time that happens twice (fall back) fires once, at its first occurrence;
- a wall time that does not exist (spring forward) fires once, at the first instant after the
  gap (the transition itself); several such times collapse into that one fire.

Instants are epoch seconds (floats); the calendar is the schedule's IANA time zone, UTC by
default, never the server's local zone by accident.
"""

from __future__ import annotations

import datetime as dt
import difflib
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pyagent.plugin import ConfigurationError

FIELDS = ("minute", "hour", "day of month", "month", "day of week", "second")
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_WALL = dt.UTC  # the zone croniter computes in: wall-clock arithmetic, no DST
#: Candidate wall times examined per next-instant search before the expression is called dead.
_MAX_STEPS = 100_000


def resolve_timezone(timezone: str | dt.tzinfo | None) -> dt.tzinfo:
    """The tzinfo for an IANA name (``"Europe/Berlin"``), a tzinfo, or None (UTC)."""
    if timezone is None:
        return ZoneInfo("UTC")
    if isinstance(timezone, dt.tzinfo):
        return timezone
    if not isinstance(timezone, str) or not timezone.strip():
        raise ConfigurationError(f"timezone={timezone!r}: give an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(timezone.strip())
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(timezone, sorted(available_timezones()), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigurationError(
            f"unknown timezone {timezone!r}{hint}: give an IANA time zone name such as "
            "'Europe/Berlin', 'America/New_York' or 'UTC'") from None


def _croniter() -> Any:
    from croniter import croniter

    return croniter


@lru_cache(maxsize=256)
def _check_field(expr: str, count: int, index: int, field: str) -> None:
    probe = ["*"] * count
    probe[index] = field
    try:
        _croniter()(" ".join(probe), dt.datetime(2026, 1, 1, tzinfo=_WALL))
    except Exception as exc:
        raise ConfigurationError(
            f"cron expression {expr!r}: the {FIELDS[index]} field {field!r} is not valid ({exc}); "
            f"fields are {' '.join(f.replace(' ', '-') for f in FIELDS[:count])}") from None


def validate(expr: Any) -> str:
    """``expr`` stripped, or a ConfigurationError naming the bad field."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigurationError(f"cron={expr!r}: give a cron expression such as '0 9 * * MON-FRI' or '@daily'")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ConfigurationError(f"cron expression {expr!r}: unknown alias; use one of {', '.join(ALIASES)}")
        return text.lower()
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ConfigurationError(
            f"cron expression {expr!r} has {len(fields)} fields: give 5 (minute hour day-of-month month "
            "day-of-week) or 6 (the same plus seconds last), e.g. '0 9 * * MON-FRI'")
    for index, field in enumerate(fields):
        _check_field(expr, len(fields), index, field)
    try:
        _croniter()(text, dt.datetime(2026, 1, 1, tzinfo=_WALL))
    except Exception as exc:
        raise ConfigurationError(f"cron expression {expr!r} is not valid: {exc}") from None
    return text


class CronExpression:
    """A validated cron expression in a time zone; computes its fire instants."""

    def __init__(self, expr: str, timezone: str | dt.tzinfo | None = "UTC") -> None:
        self.expr = validate(expr)
        self.tz = resolve_timezone(timezone)
        self.next_after(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())  # fires at all?

    def next_after(self, instant: float) -> float:
        """The first fire instant strictly after ``instant`` (epoch seconds)."""
        wall = dt.datetime.fromtimestamp(instant, self.tz).replace(tzinfo=_WALL)
        it = _croniter()(self.expr, wall)
        for _ in range(_MAX_STEPS):
            try:
                candidate = it.get_next(dt.datetime)
            except Exception as exc:  # croniter's "failed to find next date": e.g. 30 February
                raise ConfigurationError(f"cron expression {self.expr!r} never fires: {exc}") from None
            fire = self.instant_of(candidate.replace(tzinfo=None))
            if fire > instant:
                return fire
        raise ConfigurationError(f"cron expression {self.expr!r} found no fire time after {instant}")  # pragma: no cover

    def between(self, start: float, end: float, limit: int) -> list[float]:
        """Fire instants in ``(start, end]``, oldest first, at most ``limit`` of them."""
        out: list[float] = []
        t = start
        while len(out) < limit:
            t = self.next_after(t)
            if t > end:
                break
            out.append(t)
        return out

    def instant_of(self, wall: dt.datetime) -> float:
        """The instant a naive wall time of this zone fires at (see the module docstring)."""
        first = wall.replace(tzinfo=self.tz, fold=0).timestamp()
        second = wall.replace(tzinfo=self.tz, fold=1).timestamp()
        if first == second:
            return first
        lo, hi = min(first, second), max(first, second)
        if dt.datetime.fromtimestamp(first, self.tz).replace(tzinfo=None) == wall:
            return lo  # the wall time happens twice: its first occurrence
        return self._transition(lo, hi)  # it does not exist: the end of the gap

    def _transition(self, lo: float, hi: float) -> float:
        """The instant in (lo, hi] where the zone's offset changes to the one it has at ``hi``."""
        after = dt.datetime.fromtimestamp(hi, self.tz).utcoffset()
        a, b = int(lo), int(hi)
        while b - a > 1:
            mid = (a + b) // 2
            if dt.datetime.fromtimestamp(mid, self.tz).utcoffset() == after:
                b = mid
            else:
                a = mid
        return float(b)

    def __repr__(self) -> str:
        return f"CronExpression({self.expr!r}, timezone={str(self.tz)!r})"
