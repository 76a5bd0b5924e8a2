"""What a consensus run returns."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pyagent.plugin import TeamResult


class ConsensusResult(TeamResult):
    """The majority answer and how far the agents agreed.

    ``output`` is the answer of the largest group of equivalent answers in the last round,
    ``agreement`` that group's share of the agents (0..1), ``reached`` whether it met the
    threshold, ``rounds`` how many rounds ran, ``answers`` the last round's answer of every
    agent, ``supporters`` the agents in the majority group, ``agreement_by_round`` the
    agreement after each round, ``tie`` whether another group of answers was as large as the
    majority in the last round (a split is never consensus). A run whose agent raised has ``status == "failed"`` and
    ``error``; the fields describe the rounds completed before the failure.
    """

    pattern: str = "consensus"
    agreement: float = 0.0
    rounds: int = 0
    reached: bool = False
    tie: bool = False
    threshold: float = 0.8
    max_rounds: int = 0
    answers: dict[str, Any] = Field(default_factory=dict)
    supporters: list[str] = Field(default_factory=list)
    agreement_by_round: list[float] = Field(default_factory=list)
    equivalence: str = "normalised text"
