"""``AgentPatterns``: the multi-agent team patterns, each provided by a pattern plugin.

A team pattern plugin registers an object with ``build(**options) -> team`` under its name
(``supervisor``, ``consensus``, ``debate``, ``chain_of_thought``); a team has
``async run(input) -> TeamResult``. The facade resolves the plugin when called, so a
missing plugin is a clear error naming what to install.
"""

from __future__ import annotations

from typing import Any

from pyagent._sync import run_or_await
from pyagent.engine.teams import TeamResult, call_agent, check_timeout
from pyagent.errors import ConfigurationError
from pyagent.plugins import get_runtime


def build_team(pattern: str, **options: Any) -> Any:
    """Build a team with the installed plugin for ``pattern``."""
    impl = get_runtime().lookup("pattern", pattern)
    if not hasattr(impl, "build"):
        raise ConfigurationError(
            f"pattern '{pattern}' is a workflow pattern: use Workflow(pattern='{pattern}', steps=[...])"
        )
    return impl.build(**options)


class AgentPatterns:
    """The seed's multi-agent patterns.

    ``supervisor`` returns a team (``await team.run(task)``); the one-call helpers
    (``consensus``, ``debate``, ``chain_of_thought``) return the result from sync code and an
    awaitable inside a running event loop.
    """

    @staticmethod
    def supervisor(*, supervisor: Any, workers: list[Any], strategy: str = "round_robin", **options: Any) -> Any:
        """A supervised team: the supervisor plans, workers execute, the supervisor synthesizes."""
        return build_team("supervisor", supervisor=supervisor, workers=workers, strategy=strategy, **options)

    @staticmethod
    def consensus(*, agents: list[Any], task: Any, max_rounds: int = 3,
                  agreement_threshold: float = 0.8, **options: Any) -> Any:
        """Agents answer, see each other's answers and revise until they agree (or rounds run out)."""
        team = build_team("consensus", agents=agents, max_rounds=max_rounds,
                          agreement_threshold=agreement_threshold, **options)
        return run_or_await(lambda: team.run(task))

    @staticmethod
    def debate(*, pro_agent: Any, con_agent: Any, judge: Any, topic: Any, rounds: int = 3,
               **options: Any) -> Any:
        """Pro and con argue for ``rounds`` exchanges; the judge gives the verdict."""
        team = build_team("debate", pro_agent=pro_agent, con_agent=con_agent, judge=judge,
                          rounds=rounds, **options)
        return run_or_await(lambda: team.run(topic))

    @staticmethod
    def chain_of_thought(*, agent: Any, task: Any, steps: list[str], **options: Any) -> Any:
        """One agent call per reasoning step, each seeing the earlier steps' outputs."""
        team = build_team("chain_of_thought", agent=agent, steps=steps, **options)
        return run_or_await(lambda: team.run(task))


__all__ = ["AgentPatterns", "TeamResult", "build_team", "call_agent", "check_timeout"]
