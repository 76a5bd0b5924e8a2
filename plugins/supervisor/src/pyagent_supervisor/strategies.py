"""How subtasks are given to workers: in rotation, to the least busy, or to the best fit.

``round_robin`` and ``expertise_match`` decide every subtask of a round before it starts
(the decision depends only on the order and the text). ``load_balance`` decides while the
round runs: each subtask waits for a worker with room, so a faster worker frees up sooner
and takes more.
"""

from __future__ import annotations

from typing import Any

import anyio

from pyagent.plugin import score_agents

STRATEGIES = ("round_robin", "load_balance", "expertise_match")
_TIE = 1e-9


class WorkerSlot:
    """One worker with its bookkeeping for a run: work in flight, total busy time, subtasks taken."""

    __slots__ = ("agent", "assigned", "busy", "capacity", "in_flight", "index", "limiter")

    def __init__(self, agent: Any, index: int, capacity: int | None) -> None:
        self.agent = agent
        self.index = index
        self.capacity = capacity
        self.limiter = anyio.Semaphore(capacity) if capacity is not None else None
        self.in_flight = 0
        self.busy = 0.0
        self.assigned = 0

    @property
    def name(self) -> str:
        return str(self.agent.name)


class Rotation:
    """Where the rotation stands; a team keeps one, so it carries over between rounds and runs."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0


class RoundRobin:
    """Each subtask goes to the next worker in rotation; the rotation belongs to the team.

    A team that serves many tasks with one subtask each still spreads them over its workers.
    """

    name = "round_robin"
    dynamic = False

    def __init__(self, rotation: Rotation | None = None) -> None:
        self._rotation = rotation if rotation is not None else Rotation()

    async def choose(self, subtask: str, slots: list[WorkerSlot]) -> tuple[WorkerSlot, float | None]:
        slot = slots[self._rotation.next % len(slots)]
        self._rotation.next += 1
        return slot, None


class ExpertiseMatch:
    """Each subtask goes to the worker the router scores best; equal scores go to whoever has taken fewer."""

    name = "expertise_match"
    dynamic = False

    def __init__(self, router_name: str, router: Any) -> None:
        self.router_name = router_name
        self.router = router

    async def choose(self, subtask: str, slots: list[WorkerSlot]) -> tuple[WorkerSlot, float | None]:
        ranking = await score_agents(self.router, self.router_name, subtask, [s.agent for s in slots])
        best = ranking[0][1]
        tied = {name for name, score in ranking if abs(score - best) <= _TIE}
        slot = min((s for s in slots if s.name in tied), key=lambda s: (s.assigned, s.index))
        return slot, best


class LoadBalance:
    """The next subtask goes to the worker with the least work in flight (ties: least busy time, then order)."""

    name = "load_balance"
    dynamic = True

    def pick(self, slots: list[WorkerSlot]) -> WorkerSlot | None:
        """The worker to start the next subtask on, or None while every worker is at capacity."""
        free = [s for s in slots if s.capacity is None or s.in_flight < s.capacity]
        if not free:
            return None
        return min(free, key=lambda s: (s.in_flight, s.busy, s.index))
