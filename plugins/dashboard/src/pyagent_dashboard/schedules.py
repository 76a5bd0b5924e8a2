"""What the schedules page shows: the live schedules of a serving orchestrator, and the ticks a
store recorded.

A live schedule is any of the orchestrator's triggers that is a ``pyagent.plugin.ScheduleTrigger``
(pyagent-cron's ``Schedule``): its next fire times, whether it is paused, its last fire. The
store knows every tick that fired or was skipped: a tick's run id is its fire id,
``<schedule name>@<instant in UTC>`` (``daily@2026-03-02T08:00:00Z``), so the ticks of each
schedule are found from the run ids of the store's recent runs, without decoding them; only
the few ticks shown are decoded (for a skipped tick's reason).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from pyagent.plugin import ExecutionRecord, RunHeader, Store, list_headers

FIRE_ID = re.compile(r"^(?P<name>[^@]+)@(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
_STAMP = "%Y-%m-%dT%H:%M:%SZ"
#: How far back the store's ticks are read, and at most how many runs.
WINDOW = 7 * 24 * 3600
SCAN = 5000
#: Ticks listed per schedule (the newest).
SHOWN = 8
NEXT = 5


@dataclass
class Tick:
    """One recorded tick: its fire id, when it was due, what became of it."""

    run_id: str
    scheduled: float
    status: str
    reason: str | None = None


@dataclass
class Recorded:
    """What the store holds of one schedule's ticks in the window."""

    name: str
    workflow: str
    fired: int = 0
    skipped: int = 0
    failed: int = 0
    last_fired: Tick | None = None
    last_skipped: Tick | None = None
    ticks: list[Tick] = field(default_factory=list)


@dataclass
class ScheduleView:
    """One schedule as the page shows it: live (``trigger`` set) or known from the store only."""

    name: str
    workflow: str
    trigger: Any = None
    recorded: Recorded | None = None
    next_runs: list[dt.datetime] = field(default_factory=list)
    problem: str | None = None

    @property
    def live(self) -> bool:
        return self.trigger is not None

    @property
    def paused(self) -> bool:
        return bool(getattr(self.trigger, "paused", False))

    @property
    def zone(self) -> str:
        tz = getattr(self.trigger, "timezone", None)
        return str(tz) if tz is not None else "UTC"

    @property
    def cron(self) -> str | None:
        value = getattr(self.trigger, "cron", None)
        return value if isinstance(value, str) else None

    @property
    def misfire(self) -> str | None:
        value = getattr(self.trigger, "misfire", None)
        return value if isinstance(value, str) else None

    @property
    def last_fired(self) -> dt.datetime | None:
        """The scheduled time of the last tick that started a run: the schedule's own word, else
        the store's (in UTC)."""
        value = getattr(self.trigger, "last_fired", None)
        rec = self.recorded.last_fired if self.recorded is not None else None
        if rec is not None:
            stored = dt.datetime.fromtimestamp(rec.scheduled, dt.UTC)
            if not isinstance(value, dt.datetime) or stored > value:
                tz = getattr(self.trigger, "timezone", None)
                return stored.astimezone(tz) if tz is not None else stored
        return value if isinstance(value, dt.datetime) else None


def scheduled_at(run_id: str) -> tuple[str, float] | None:
    """``(schedule name, instant)`` of a fire id, or None for any other run id."""
    m = FIRE_ID.match(run_id)
    if m is None:
        return None
    when = dt.datetime.strptime(m["stamp"], _STAMP).replace(tzinfo=dt.UTC)
    return m["name"], when.timestamp()


async def recorded_ticks(store: Store, *, now: float | None = None) -> dict[str, Recorded]:
    """The ticks the store recorded in the last :data:`WINDOW` before ``now`` (default: the
    runtime clock's time, which schedules fire on), by schedule name."""
    if now is None:
        from pyagent.plugin import get_runtime

        now = get_runtime().clock.time()
    headers = await list_headers(store, since=now - WINDOW, limit=SCAN)
    groups: dict[str, Recorded] = {}
    shown: dict[str, list[RunHeader]] = {}
    for h in headers:
        found = scheduled_at(h.run_id)
        if found is None:
            continue
        name, at = found
        rec = groups.get(name)
        if rec is None:
            rec = groups[name] = Recorded(name, h.workflow)
        if h.status == "skipped":
            rec.skipped += 1
        else:
            rec.fired += 1
            if h.status == "failed":
                rec.failed += 1
        tick = Tick(h.run_id, at, h.status)
        if h.status == "skipped":
            if rec.last_skipped is None or at > rec.last_skipped.scheduled:
                rec.last_skipped = tick
        elif rec.last_fired is None or at > rec.last_fired.scheduled:
            rec.last_fired = tick
        rec.ticks.append(tick)
        shown.setdefault(name, []).append(h)
    for name, rec in groups.items():
        rec.ticks.sort(key=lambda t: t.scheduled, reverse=True)
        del rec.ticks[SHOWN:]
        keep = {t.run_id for t in rec.ticks}
        if rec.last_skipped is not None:
            keep.add(rec.last_skipped.run_id)
        reasons = {h.run_id: _reason(h) for h in shown[name] if h.run_id in keep and h.status == "skipped"}
        for tick in [*rec.ticks, *([rec.last_skipped] if rec.last_skipped else [])]:
            tick.reason = reasons.get(tick.run_id, tick.reason)
    return groups


def _reason(h: RunHeader) -> str | None:
    """Why a tick was skipped, from its record (None when it cannot be read here)."""
    if not h.payload:
        return None
    try:
        return ExecutionRecord.from_payload(h.payload, f"tick {h.run_id}").error
    except Exception:
        return None


def views(live: list[Any], recorded: dict[str, Recorded]) -> list[ScheduleView]:
    """The live schedules first (in the order they were added), then those only the store knows."""
    out = []
    for trigger in live:
        name = str(getattr(trigger, "name", "?"))
        wf = getattr(getattr(trigger, "workflow", None), "name", "?")
        view = ScheduleView(name, str(wf), trigger, recorded.get(name))
        try:
            view.next_runs = list(trigger.next_runs(NEXT))
        except Exception as exc:  # a schedule that cannot say: shown, with why
            view.problem = f"next fire times unknown: {type(exc).__name__}: {exc}"
        out.append(view)
    names = {v.name for v in out}
    for name, rec in sorted(recorded.items()):
        if name not in names:
            out.append(ScheduleView(name, rec.workflow, None, rec))
    return out


def find(live: list[Any], name: str) -> Any:
    """The live schedule named ``name``, or None."""
    for trigger in live:
        if getattr(trigger, "name", None) == name:
            return trigger
    return None


def in_zone(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def in_utc(when: dt.datetime | float) -> str:
    if isinstance(when, (int, float)):
        when = dt.datetime.fromtimestamp(when, dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
