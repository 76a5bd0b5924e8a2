"""What readers of triggers rely on: a trigger's kind, and the schedule protocol."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.plugin import ScheduleTrigger


class Every:
    """A schedule of its own (not pyagent-cron's): fires every ``seconds`` from a start."""

    def __init__(self, workflow: Any, seconds: float) -> None:
        self.name, self.workflow, self.seconds = "every", workflow, seconds
        self.paused = False
        self.last_fired: dt.datetime | None = None

    @property
    def timezone(self) -> dt.tzinfo:
        return dt.UTC

    def next_runs(self, n: int = 5) -> list[dt.datetime]:
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        return [start + dt.timedelta(seconds=self.seconds * (i + 1)) for i in range(n)]

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


def test_a_schedule_of_any_kind_is_a_schedule_trigger_and_other_triggers_are_not(serving_runtime: Any) -> None:
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)])
    assert isinstance(Every(wf, 60), ScheduleTrigger)
    subscription = Orchestrator().on_event("go", workflow=wf)
    assert not isinstance(subscription, ScheduleTrigger)  # it can pause, but has no fire times
    assert not isinstance(object(), ScheduleTrigger)


def test_trigger_kind_names_the_kind_a_trigger_was_added_as(serving_runtime: Any) -> None:
    orch = Orchestrator()
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)])
    subscription = orch.on_event("go", workflow=wf)
    assert orch.trigger_kind(subscription) == "event"
    assert orch.trigger_kind(Every(wf, 60)) is None  # not one of its triggers
    orch.remove_trigger(subscription)
    assert orch.trigger_kind(subscription) is None
