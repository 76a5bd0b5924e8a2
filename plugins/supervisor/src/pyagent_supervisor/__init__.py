"""The supervisor pattern: a supervisor agent plans subtasks, workers execute them, it synthesizes.

``AgentPatterns.supervisor(supervisor=, workers=, strategy=)`` resolves this plugin and returns
a :class:`SupervisorTeam`; ``await team.run(task)`` returns a :class:`SupervisorResult`.
"""

from __future__ import annotations

from typing import Any

from pyagent import hookimpl

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

    def build(
        self,
        *,
        supervisor: Any,
        workers: list[Any],
        strategy: str = "round_robin",
        max_rounds: int = 1,
        worker_concurrency: int | None = None,
        router: Any = None,
        on_worker_error: str = "fail",
        worker_timeout: float | None = None,
        name: str = "supervisor",
        description: str = "",
    ) -> SupervisorTeam:
        """A team; options are checked here, so a bad one raises before any agent runs.

        ``max_rounds`` > 1 lets the supervisor review results and delegate more (phase
        ``"review"``); ``worker_concurrency`` caps subtasks in flight per worker (load_balance
        defaults to 1); ``router`` picks the router for ``expertise_match`` (default: the
        installed default router); ``on_worker_error="continue"`` lets the supervisor
        synthesize from the subtasks that succeeded; ``worker_timeout`` (seconds) cancels a
        subtask whose worker has not answered by then and counts it as a worker error.
        """
        return SupervisorTeam(
            supervisor=supervisor, workers=workers, strategy=strategy, max_rounds=max_rounds,
            worker_concurrency=worker_concurrency, router=router, on_worker_error=on_worker_error,
            worker_timeout=worker_timeout, name=name, description=description,
        )


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("supervisor", SupervisorPattern())
