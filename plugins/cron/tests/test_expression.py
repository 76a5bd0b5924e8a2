"""Cron expressions: validation that names the bad field, and daylight-saving time done right."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from pyagent_cron.expression import CronExpression

from pyagent import ConfigurationError

UTC = dt.UTC


def fires(expr: str, zone: str, start: str, n: int) -> list[str]:
    """The next n fire instants after ``start`` (UTC), as 'local wall time (UTC)'."""
    c = CronExpression(expr, zone)
    t = dt.datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()
    out = []
    for _ in range(n):
        t = c.next_after(t)
        local = dt.datetime.fromtimestamp(t, ZoneInfo(zone))
        out.append(f"{local:%m-%d %H:%M%z} ({dt.datetime.fromtimestamp(t, UTC):%H:%MZ})")
    return out


@pytest.mark.parametrize(("expr", "message"), [
    ("0 25 * * *", "the hour field '25' is not valid"),
    ("61 * * * *", "the minute field '61' is not valid"),
    ("0 9 * FOO *", "the month field 'FOO' is not valid"),
    ("0 9 * * MON-FRX", "the day of week field 'MON-FRX' is not valid"),
    ("0 9 * * * 99", "the second field '99' is not valid"),
    ("* * *", "has 3 fields: give 5"),
    ("0 0 1 1 * * 2030", "has 7 fields"),
    ("@fortnightly", "unknown alias"),
    ("0 0 31 2 *", "never fires"),
    ("", "give a cron expression"),
])
def test_a_bad_expression_is_refused_naming_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CronExpression(expr)


def test_an_unknown_timezone_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown timezone 'Europe/Berlinn' \(did you mean 'Europe/Berlin'"):
        CronExpression("0 9 * * *", "Europe/Berlinn")
    with pytest.raises(ConfigurationError, match="IANA"):
        CronExpression("0 9 * * *", "")


def test_names_aliases_and_a_seconds_field() -> None:
    assert fires("0 9 * * MON-FRI", "UTC", "2026-03-06T10:00:00", 2) == [  # Friday after 9: next is Monday
        "03-09 09:00+0000 (09:00Z)", "03-10 09:00+0000 (09:00Z)"]
    assert fires("0 0 1 JAN,JUL *", "UTC", "2026-02-01T00:00:00", 2) == [
        "07-01 00:00+0000 (00:00Z)", "01-01 00:00+0000 (00:00Z)"]
    assert fires("@hourly", "UTC", "2026-01-01T00:30:00", 1) == ["01-01 01:00+0000 (01:00Z)"]
    assert fires("@weekly", "UTC", "2026-01-01T00:00:00", 1) == ["01-04 00:00+0000 (00:00Z)"]  # Sunday
    assert fires("@monthly", "UTC", "2026-01-15T00:00:00", 1) == ["02-01 00:00+0000 (00:00Z)"]
    c = CronExpression("*/20 * * * * 30")  # seconds last
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert c.next_after(t0) - t0 == 30 and c.next_after(t0 + 30) - t0 == 20 * 60 + 30


def test_the_default_zone_is_utc_not_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert fires("0 9 * * *", "UTC", "2026-01-01T00:00:00", 1) == ["01-01 09:00+0000 (09:00Z)"]
        assert str(CronExpression("0 9 * * *").tz) == "UTC"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -- daylight saving: spring forward (a wall time that does not exist) ------------------------

def test_spring_forward_in_berlin_fires_once_at_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00", 3) == [
        "03-28 02:30+0100 (01:30Z)", "03-29 03:00+0200 (01:00Z)", "03-30 02:30+0200 (00:30Z)"]
    # Every 30 minutes: 02:00 and 02:30 collapse into one fire at 03:00, and 03:00 is not fired twice.
    assert fires("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:10:00", 4) == [
        "03-29 01:30+0100 (00:30Z)", "03-29 03:00+0200 (01:00Z)", "03-29 03:30+0200 (01:30Z)",
        "03-29 04:00+0200 (02:00Z)"]


def test_spring_forward_in_new_york_fires_once_at_the_end_of_the_gap() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    assert fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00", 3) == [
        "03-08 03:00-0400 (07:00Z)", "03-09 02:30-0400 (06:30Z)", "03-10 02:30-0400 (06:30Z)"]
    assert fires("0 * * * *", "America/New_York", "2026-03-08T05:30:00", 3) == [  # 01:00, then 03:00
        "03-08 01:00-0500 (06:00Z)", "03-08 03:00-0400 (07:00Z)", "03-08 04:00-0400 (08:00Z)"]


# -- daylight saving: fall back (a wall time that happens twice) ------------------------------

def test_fall_back_in_berlin_fires_a_repeated_time_once() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert fires("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00", 3) == [
        "10-24 02:30+0200 (00:30Z)", "10-25 02:30+0200 (00:30Z)", "10-26 02:30+0100 (01:30Z)"]
    assert fires("0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00", 3) == [  # 02:00 once, then 03:00 CET
        "10-25 01:00+0200 (23:00Z)", "10-25 02:00+0200 (00:00Z)", "10-25 03:00+0100 (02:00Z)"]


def test_fall_back_in_new_york_fires_a_repeated_time_once() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00", 2) == [
        "11-01 01:30-0400 (05:30Z)", "11-02 01:30-0500 (06:30Z)"]
    # Asked from inside the repeated hour (01:40 EST, the second pass), 01:30 is not fired again.
    assert fires("30 1 * * *", "America/New_York", "2026-11-01T06:40:00", 1) == ["11-02 01:30-0500 (06:30Z)"]


def test_croniter_alone_fires_the_repeated_time_twice() -> None:
    """Why wall times are resolved here: the same expression through croniter's own zone handling."""
    tz = ZoneInfo("Europe/Berlin")
    it = croniter("30 2 * * *", dt.datetime(2026, 10, 24, 12, tzinfo=tz))
    raw = [it.get_next(dt.datetime).astimezone(UTC).strftime("%m-%d %H:%MZ") for _ in range(3)]
    assert raw == ["10-25 00:30Z", "10-25 01:30Z", "10-26 01:30Z"]  # 02:30 CEST and 02:30 CET
    assert fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00", 2) == [
        "10-25 02:30+0200 (00:30Z)", "10-26 02:30+0100 (01:30Z)"]
