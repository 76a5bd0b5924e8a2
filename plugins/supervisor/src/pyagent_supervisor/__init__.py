"""The supervisor pattern: a supervisor agent plans subtasks, workers execute them, it synthesizes.

``AgentPatterns.supervisor(supervisor=, workers=, strategy=)`` resolves this plugin and returns
a :class:`SupervisorTeam`; ``await team.run(task)`` returns a :class:`SupervisorResult`.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .plan import PlanError, parse_plan
from .strategies import STRATEGIES
from .team import Assignment, SupervisorError, SupervisorResult, SupervisorTeam, WorkerError

__all__ = [
    "STRATEGIES",
    "Assignment",
    "PlanError",
    "SupervisorError",
    "SupervisorPattern",
    "SupervisorResult",
    "SupervisorTeam",
    "WorkerError",
    "parse_plan",
]


class SupervisorPattern:
    """The registered team pattern: ``build(**options)`` returns a supervised team."""

    name = "supervisor"

    def build(self, **options: Any) -> SupervisorTeam:
        """A team; options (see :class:`SupervisorTeam`) are checked here, so a bad one raises
        before any agent runs."""
        return SupervisorTeam(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("supervisor", SupervisorPattern())
