"""What a chain of thought returns."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pyagent.plugin import TeamResult


class ChainOfThoughtResult(TeamResult):
    """Every step's output and the final solution.

    ``steps`` lists the outputs in step order, ``by_step`` maps each step's name to its
    output, ``step_names`` the steps as given, ``output`` is the last step's output (the
    solution). A run whose agent raised has ``status == "failed"``, ``error`` naming the step,
    and the outputs of the steps before it.
    """

    pattern: str = "chain_of_thought"
    task: Any = None
    steps: list[Any] = Field(default_factory=list)
    by_step: dict[str, Any] = Field(default_factory=dict)
    step_names: list[str] = Field(default_factory=list)
