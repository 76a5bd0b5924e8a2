"""The circuit breaker: stop calling agents of a workflow that keeps failing, then probe carefully.

Written by hand: no maintained circuit-breaker library works on anyio (asyncio *and* trio)
with an injectable clock; ``pybreaker`` and ``aiobreaker`` are asyncio/sync only and read
wall time themselves. The state machine is small:

* **closed**: runs go through; ``failure_threshold`` consecutive failed runs open it (a
  successful run resets the count).
* **open**: runs are refused at once with :class:`~pyagent.errors.CircuitOpenError`, no
  agent is called. After ``reset_timeout`` seconds (``runtime.clock.monotonic``) the next
  run finds it half-open.
* **half_open**: exactly ``half_open_requests`` trial runs are let through (further runs
  while those are in flight are refused). When all of them succeed it closes; the first
  failed trial opens it again for another ``reset_timeout``.

One breaker per workflow object, shared by every run of it in the process (and thread-safe,
for workflows run from several threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyagent.errors import CircuitOpenError

if TYPE_CHECKING:
    from pyagent.model.policies import CircuitBreakerConfig
    from pyagent.workflow import Workflow

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

Transition = tuple[str, str, str]  # (from, to, why)


@dataclass(frozen=True)
class Ticket:
    """Permission for one run; handed back to :meth:`CircuitBreaker.release` when the run ends."""

    generation: int
    trial: bool


class CircuitBreaker:
    """Per-workflow breaker; see the module docstring for the states."""

    def __init__(self, name: str, config: CircuitBreakerConfig,
                 monotonic: Callable[[], float]) -> None:
        self.name = name
        self.config = config
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.state = CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.trials_in_flight = 0
        self.trials_succeeded = 0
        self.total_opened = 0
        self.rejected = 0
        # Bumped on every transition, so an outcome from a run admitted under an older state
        # (a run started while closed that ends after the breaker opened) is ignored.
        self._generation = 0

    def use_clock(self, monotonic: Callable[[], float]) -> None:
        """Read time from ``monotonic`` (the runtime's clock; swapped in tests)."""
        self._monotonic = monotonic

    # -- admission ----------------------------------------------------------------------------

    def admit(self) -> tuple[Ticket | None, list[Transition], CircuitOpenError | None]:
        """Let a run in (a ticket) or refuse it (an error); also the transitions this caused."""
        changes: list[Transition] = []
        with self._lock:
            if self.state == OPEN and self._monotonic() - (self.opened_at or 0.0) >= self.config.reset_timeout:
                changes.append(self._move(HALF_OPEN, f"reset_timeout of {self.config.reset_timeout:g}s passed"))
            if self.state == CLOSED:
                return Ticket(self._generation, False), changes, None
            if self.state == HALF_OPEN:
                if self.trials_in_flight + self.trials_succeeded < self.config.half_open_requests:
                    self.trials_in_flight += 1
                    return Ticket(self._generation, True), changes, None
                self.rejected += 1
                return None, changes, CircuitOpenError(
                    f"circuit breaker of workflow '{self.name}' is half-open and its "
                    f"{self.config.half_open_requests} trial run(s) are in flight: run refused; "
                    "try again when they finish"
                )
            self.rejected += 1
            wait = self.config.reset_timeout - (self._monotonic() - (self.opened_at or 0.0))
            return None, changes, CircuitOpenError(
                f"circuit breaker of workflow '{self.name}' is open after "
                f"{self.config.failure_threshold} consecutive failed runs: run refused without "
                f"calling any agent; it lets trial runs through in {max(wait, 0.0):.1f}s "
                f"(reset_timeout={self.config.reset_timeout:g}s)"
            )

    def release(self, ticket: Ticket, outcome: bool | None) -> list[Transition]:
        """Record how an admitted run ended: True ok, False failed, None cancelled (not counted)."""
        with self._lock:
            if ticket.generation != self._generation:
                return []
            if ticket.trial:
                self.trials_in_flight -= 1
                if outcome is None:
                    return []
                if not outcome:
                    return [self._move(OPEN, "a trial run failed")]
                self.trials_succeeded += 1
                if self.trials_succeeded >= self.config.half_open_requests:
                    return [self._move(CLOSED, f"{self.trials_succeeded} trial run(s) succeeded")]
                return []
            if outcome is None:
                return []
            if outcome:
                self.consecutive_failures = 0
                return []
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.config.failure_threshold:
                return [self._move(OPEN, f"{self.consecutive_failures} consecutive failed runs")]
            return []

    def _move(self, to: str, why: str) -> Transition:
        before = self.state
        self.state = to
        self._generation += 1
        self.trials_in_flight = 0
        self.trials_succeeded = 0
        if to == OPEN:
            self.opened_at = self._monotonic()
            self.total_opened += 1
        elif to == CLOSED:
            self.consecutive_failures = 0
            self.opened_at = None
        return (before, to, why)

    # -- inspection ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state as plain data (for get_state, get_metrics and events)."""
        with self._lock:
            state = self.state
            retry_in = None
            if state == OPEN:
                elapsed = self._monotonic() - (self.opened_at or 0.0)
                retry_in = max(0.0, self.config.reset_timeout - elapsed)
                if retry_in == 0.0:
                    state = HALF_OPEN  # what the next run will find
                    retry_in = None
            return {
                "state": state,
                "consecutive_failures": self.consecutive_failures,
                "failure_threshold": self.config.failure_threshold,
                "reset_timeout": self.config.reset_timeout,
                "half_open_requests": self.config.half_open_requests,
                "trials_in_flight": self.trials_in_flight,
                "retry_in": retry_in,
                "times_opened": self.total_opened,
                "rejected": self.rejected,
            }


def breaker_for(workflow: Workflow, monotonic: Callable[[], float]) -> CircuitBreaker | None:
    """The workflow's shared breaker (created on first use), or None when it has none configured."""
    config = workflow.circuit_breaker
    if config is None:
        return None
    data = workflow._runtime_data
    breaker: CircuitBreaker | None = data.get("breaker")
    if breaker is None or breaker.config is not config:
        breaker = CircuitBreaker(workflow.name, config, monotonic)
        data["breaker"] = breaker
    else:
        breaker.use_clock(monotonic)
    return breaker
