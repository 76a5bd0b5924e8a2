"""pyagent-cron: ``orchestrator.schedule(workflow, cron="0 9 * * MON-FRI", timezone="Europe/Berlin")``.

Registers the ``cron`` trigger kind. croniter is imported when the first schedule is made,
never at plugin discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.plugin import hookimpl

if TYPE_CHECKING:
    from .expression import CronExpression
    from .schedule import Schedule

__all__ = ["CronExpression", "Schedule"]


def _make(orchestrator: Any, workflow: Any, **options: Any) -> Schedule:
    from .schedule import Schedule

    return Schedule(orchestrator, workflow, **options)


@hookimpl
def pyagent_register_triggers(register: Any) -> None:
    register("cron", _make)


def __getattr__(name: str) -> Any:
    if name == "Schedule":
        from .schedule import Schedule

        return Schedule
    if name == "CronExpression":
        from .expression import CronExpression

        return CronExpression
    raise AttributeError(f"module 'pyagent_cron' has no attribute {name!r}")
