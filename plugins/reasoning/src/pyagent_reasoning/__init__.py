"""Chain of thought: an agent works through named reasoning steps, each seeing the earlier ones.

``AgentPatterns.chain_of_thought(agent=..., task=..., steps=[...])`` resolves this plugin by
the pattern name ``chain_of_thought``.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import ConfigurationError, hookimpl

from .result import ChainOfThoughtResult
from .team import ChainOfThoughtTeam, StepFailedError, build

__all__ = ["ChainOfThoughtPattern", "ChainOfThoughtResult", "ChainOfThoughtTeam", "StepFailedError"]


class ChainOfThoughtPattern:
    """The team pattern registered as ``chain_of_thought``: ``build(**options)`` returns a team."""

    name = "chain_of_thought"
    options = ("agent", "steps", "timeout")

    def build(self, **options: Any) -> ChainOfThoughtTeam:
        """Build a :class:`ChainOfThoughtTeam` (options: agent, steps, timeout)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigurationError(
                f"chain_of_thought got unknown option(s) {', '.join(unknown)}: it takes agent, task, steps, timeout"
            )
        return build(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("chain_of_thought", ChainOfThoughtPattern())
