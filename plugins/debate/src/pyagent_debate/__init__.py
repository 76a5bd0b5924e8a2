"""The debate pattern: pro and con argue for a number of rounds; a judge gives the verdict.

``AgentPatterns.debate(pro_agent=..., con_agent=..., judge=..., topic=..., rounds=3)``
resolves this plugin by the pattern name ``debate``.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import ConfigurationError, hookimpl

from .result import DebateResult
from .team import DebaterFailedError, DebateTeam, build
from .verdict import Verdict, Winner, parse_verdict

__all__ = [
    "DebatePattern",
    "DebateResult",
    "DebateTeam",
    "DebaterFailedError",
    "Verdict",
    "Winner",
    "parse_verdict",
]


class DebatePattern:
    """The team pattern registered as ``debate``: ``build(**options)`` returns a team."""

    name = "debate"
    options = ("pro_agent", "con_agent", "judge", "rounds", "timeout")

    def build(self, **options: Any) -> DebateTeam:
        """Build a :class:`DebateTeam` (options: pro_agent, con_agent, judge, rounds, timeout)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigurationError(
                f"debate got unknown option(s) {', '.join(unknown)}: it takes pro_agent, con_agent, judge, topic, rounds, timeout"
            )
        return build(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("debate", DebatePattern())
