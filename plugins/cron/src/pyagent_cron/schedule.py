"""A cron schedule: the ``cron`` trigger that ``orchestrator.schedule(...)`` returns.

Each tick's run id is its fire id, ``"<schedule name>@<instant in UTC>"``. The host records
the run (``Store.create_run``) before starting it, so a tick is fired once however often the
process restarts and however many serve processes share the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.plugin import ConfigurationError, get_runtime

from .expression import CronExpression

if TYPE_CHECKING:
    from pyagent.plugin import TriggerHost, Workflow

log = logging.getLogger("pyagent.cron")

MISFIRE = ("run_once", "skip", "all")
#: A tick reached more than this many seconds after its instant was missed, not run late.
LATE = 1.0
#: Missed ticks considered at once; older ones beyond this are only counted in the log.
MAX_MISSED = 10_000
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def _number(name: str, value: Any, minimum: float, integer: bool = False) -> Any:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and value >= minimum
    if not ok:
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"{name}={value!r}: give {kind} >= {minimum:g}")
    return value


class Schedule:
    """Runs a workflow at the instants of a cron expression (see ``orchestrator.schedule``).

    ``misfire`` says what happens to ticks missed while nothing served them (or while the
    process was too late to run them): ``"skip"`` drops them, ``"run_once"`` runs one run for
    all of them (the latest tick's), ``"all"`` runs each, oldest first, up to
    ``max_catch_up``. Every missed tick not run is recorded as a ``skipped`` run and
    announced as a ``trigger.skipped`` event. ``jitter`` delays each fire by 0..jitter
    seconds; runs of one schedule never overlap beyond ``max_instances`` (a tick that would is
    skipped, announced and recorded).
    """

    def __init__(self, orchestrator: Any, workflow: Workflow, *, cron: str, timezone: str | dt.tzinfo | None = "UTC",
                 input: Any = None, misfire: str = "run_once", jitter: float = 0, name: str | None = None,
                 max_instances: int = 1, max_catch_up: int = 100) -> None:
        self.expression = CronExpression(cron, timezone)
        if misfire not in MISFIRE:
            raise ConfigurationError(f"misfire={misfire!r}: use one of {', '.join(repr(m) for m in MISFIRE)}")
        self.jitter = float(_number("jitter", jitter, 0))
        self.max_instances = _number("max_instances", max_instances, 1, integer=True)
        self.max_catch_up = _number("max_catch_up", max_catch_up, 1, integer=True)
        name = workflow.name if name is None else name
        if not isinstance(name, str) or not name or "@" in name:
            raise ConfigurationError(f"name={name!r}: give the schedule a non-empty name without '@'")
        for other in orchestrator.triggers:
            if isinstance(other, Schedule) and other.name == name:
                raise ConfigurationError(
                    f"a schedule named {name!r} exists already: pass name='...' to schedule() (a schedule's "
                    "name identifies its ticks across restarts, so it must be unique and stable)")
        self.orchestrator = orchestrator
        self.workflow = workflow
        self.name = name
        self.cron = self.expression.expr
        self.input = input
        self.misfire = misfire
        self.paused = False
        self.last_fired: dt.datetime | None = None
        self._running: set[str] = set()
        self._slot_freed: anyio.Event | None = None

    @property
    def timezone(self) -> dt.tzinfo:
        return self.expression.tz

    # -- inspection ----------------------------------------------------------------------------

    def next_runs(self, n: int = 5, *, after: dt.datetime | float | None = None) -> list[dt.datetime]:
        """The next ``n`` fire times after now (the runtime clock) or ``after``, in the schedule's zone."""
        _number("n", n, 0, integer=True)
        if after is None:
            t = get_runtime().clock.time()
        elif isinstance(after, dt.datetime):
            if after.tzinfo is None:
                raise ConfigurationError("after= is a naive datetime: give it a tzinfo (the schedule's zone is "
                                         f"{self.timezone})")
            t = after.timestamp()
        else:
            t = float(after)
        out = []
        for _ in range(n):
            t = self.expression.next_after(t)
            out.append(dt.datetime.fromtimestamp(t, self.timezone))
        return out

    def fire_id(self, instant: float) -> str:
        """The run id of the tick at ``instant``: the schedule's name and the instant in UTC."""
        return f"{self.name}@{dt.datetime.fromtimestamp(instant, dt.UTC).strftime(_STAMP)}"

    def describe(self) -> str:
        nxt = self.next_runs(1)
        when = nxt[0].isoformat() if nxt else "never"
        state = " (paused)" if self.paused else ""
        return f"cron {self.cron!r} in {self.timezone} -> {self.workflow.name!r}{state}, next {when}"

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, cron={self.cron!r}, timezone={str(self.timezone)!r})"

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Fire nothing until ``resume()``; ticks meanwhile are recorded as skipped."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def remove(self) -> None:
        """Stop this schedule for good and take it off the orchestrator."""
        self.orchestrator.remove_trigger(self)

    # -- serving -------------------------------------------------------------------------------

    async def serve(self, host: TriggerHost) -> None:
        """Fire every tick until cancelled; first, ticks missed since the last recorded one."""
        clock = host.clock
        now = clock.time()
        last = await self._last_recorded(host)
        if last is not None and last < now:
            missed = self.expression.between(last, now, MAX_MISSED)
            if missed:
                log.info("schedule %r missed %d tick(s) while not serving (misfire=%r)",
                         self.name, len(missed), self.misfire)
                await self._missed(host, missed, "missed while not serving")
        cursor = now
        while True:
            tick = self.expression.next_after(cursor)
            await clock.sleep_until(tick)
            now = clock.time()
            due = [tick, *self.expression.between(tick, now, MAX_MISSED)]
            cursor = max(due[-1], now)
            if self.paused:
                for t in due:
                    await self._skip(host, t, "the schedule was paused")
            elif len(due) == 1 and now - tick <= LATE:
                if self.jitter:
                    host.start_soon(self._fire_later, host, tick, random.uniform(0, self.jitter))
                else:
                    await self._fire(host, tick)
            else:
                await self._missed(host, due, f"missed: reached {now - tick:.1f}s late")

    async def _last_recorded(self, host: TriggerHost) -> float | None:
        prefix = f"{self.name}@"
        latest: float | None = None
        for run_id in await host.recorded_runs(self.workflow.name):
            if not run_id.startswith(prefix):
                continue
            try:
                when = dt.datetime.strptime(run_id[len(prefix):], _STAMP).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            t = when.timestamp()
            if latest is None or t > latest:
                latest = t
        if latest is not None and self.last_fired is None:
            self.last_fired = dt.datetime.fromtimestamp(latest, self.timezone)
        return latest

    async def _missed(self, host: TriggerHost, ticks: list[float], why: str) -> None:
        if self.misfire == "skip":
            run: list[float] = []
        elif self.misfire == "run_once":
            run = ticks[-1:]
        else:
            run = ticks[: self.max_catch_up]
        chosen = set(run)
        for t in ticks:
            if t not in chosen:
                await self._skip(host, t, f"{why} (misfire={self.misfire!r})")
        for t in run:
            if self.misfire == "all":
                await self._wait_for_slot()
            await self._fire(host, t, late=True)

    async def _skip(self, host: TriggerHost, tick: float, reason: str) -> None:
        await host.record_skipped(self.workflow, self.fire_id(tick), at=tick, reason=reason, trigger="cron",
                                  source=self.name, data={"scheduled": self._stamp(tick)})

    async def _fire_later(self, host: TriggerHost, tick: float, delay: float) -> None:
        await host.clock.sleep_until(tick + delay)
        await self._fire(host, tick)

    async def _fire(self, host: TriggerHost, tick: float, *, late: bool = False) -> None:
        from pyagent.plugin import NotAcceptingError

        run_id = self.fire_id(tick)
        if len(self._running) >= self.max_instances:
            log.warning("schedule %r: tick %s skipped, %d run(s) still running (max_instances=%d)",
                        self.name, self._stamp(tick), len(self._running), self.max_instances)
            await self._skip(host, tick, f"overlap: {len(self._running)} run(s) of this schedule still "
                                         f"running (max_instances={self.max_instances})")
            return
        self._running.add(run_id)
        try:
            sub = await host.submit(self.workflow, self.input, run_id=run_id, trigger="cron", source=self.name,
                                    on_finish=self._finished, data={"scheduled": self._stamp(tick), "late": late})
        except NotAcceptingError:
            self._running.discard(run_id)
            return
        if not sub.created:  # fired before (by this process or another sharing the store)
            self._running.discard(run_id)
            return
        self.last_fired = dt.datetime.fromtimestamp(tick, self.timezone)

    def _finished(self, run_id: str, result: Any) -> None:
        self._running.discard(run_id)
        if self._slot_freed is not None:
            self._slot_freed.set()

    async def _wait_for_slot(self) -> None:
        while len(self._running) >= self.max_instances:
            self._slot_freed = anyio.Event()
            await self._slot_freed.wait()

    @staticmethod
    def _stamp(instant: float) -> str:
        return dt.datetime.fromtimestamp(instant, dt.UTC).strftime(_STAMP)
