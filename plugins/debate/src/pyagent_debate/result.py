"""What a debate returns."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pyagent.plugin import TeamResult

from .verdict import Verdict, Winner


class DebateResult(TeamResult):
    """The judge's verdict and everything that was said.

    ``verdict`` has ``winner`` ("pro", "con" or "balanced") and ``conclusion``; ``output`` is
    the conclusion; ``transcript`` holds every argument in order (``role`` "pro"/"con") and
    the judge's verdict last (``role`` "judge"); ``arguments`` the arguments by side. A run
    whose agent raised has ``status == "failed"``, ``error`` naming the agent, and no verdict.
    """

    pattern: str = "debate"
    topic: Any = None
    verdict: Verdict | None = None
    rounds: int = 0
    arguments: dict[str, list[Any]] = Field(default_factory=lambda: {"pro": [], "con": []})

    @property
    def winner(self) -> Winner | None:
        """The winning side, or None when the debate failed before the verdict."""
        return None if self.verdict is None else self.verdict.winner
