"""The consensus pattern: agents answer, read each other's answers and revise until they agree.

``AgentPatterns.consensus(agents=[...], task=..., max_rounds=3, agreement_threshold=0.8)``
resolves this plugin by the pattern name ``consensus``.
"""

from __future__ import annotations

from typing import Any

from pyagent import hookimpl

from .agreement import Agreement, measure, normalise, same_text
from .result import ConsensusResult
from .team import AgentFailedError, ConsensusTeam, EquivalenceError, build

__all__ = [
    "AgentFailedError",
    "Agreement",
    "ConsensusPattern",
    "ConsensusResult",
    "ConsensusTeam",
    "EquivalenceError",
    "measure",
    "normalise",
    "same_text",
]


class ConsensusPattern:
    """The team pattern registered as ``consensus``: ``build(**options)`` returns a team."""

    name = "consensus"

    def build(self, **options: Any) -> ConsensusTeam:
        """Build a :class:`ConsensusTeam` (see :func:`pyagent_consensus.team.build` for options)."""
        return build(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("consensus", ConsensusPattern())
