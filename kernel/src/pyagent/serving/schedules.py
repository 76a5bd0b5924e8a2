"""What a schedule trigger offers to those who show or steer it (a dashboard, a command).

A trigger kind whose triggers fire at times known in advance (pyagent-cron's ``Schedule``)
gives its triggers these members; readers find them with
``isinstance(trigger, ScheduleTrigger)`` among ``orchestrator.triggers`` and never import the
plugin that made them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScheduleTrigger(Protocol):
    """A trigger that fires a workflow at instants it can tell in advance.

    ``name`` identifies it (stable across restarts: the ids of its ticks start with it),
    ``workflow`` is what it runs, ``paused`` whether ticks are skipped (recorded as ``skipped``
    runs) rather than fired, ``last_fired`` the scheduled time of the last tick that started
    a run (None before the first). ``timezone`` is the zone its times are given in.
    Optional members a reader may use when present: ``cron`` (its expression), ``misfire``
    (what happens to missed ticks), ``describe()``.
    """

    name: str
    workflow: Any
    paused: bool
    last_fired: dt.datetime | None

    @property
    def timezone(self) -> dt.tzinfo: ...

    def next_runs(self, n: int = 5) -> list[dt.datetime]:
        """The next ``n`` fire times after now, timezone-aware, in the schedule's zone."""
        ...

    def pause(self) -> None:
        """Fire nothing until :meth:`resume` (ticks meanwhile are recorded as skipped)."""
        ...

    def resume(self) -> None:
        """Fire again from the next tick."""
        ...
