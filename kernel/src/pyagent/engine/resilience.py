"""The circuit breaker: stop calling agents of a workflow that keeps failing, then probe carefully.

Written by hand: no maintained circuit-breaker library works on anyio (asyncio *and* trio)
with an injectable clock; ``pybreaker`` and ``aiobreaker`` are asyncio/sync only and read
wall time themselves. The state machine is small:

* **closed**: runs go through; ``failure_threshold`` consecutive failed runs open it (a
  successful run resets the count).
* **open**: runs are refused at once with :class:`~pyagent.errors.CircuitOpenError`, no
  agent is called. After ``reset_timeout`` seconds the next run finds it half-open.
* **half_open**: exactly ``half_open_requests`` trial runs are let through (further runs
  while those are in flight are refused). When all of them succeed it closes; the first
  failed trial opens it again for another ``reset_timeout``.

The machine itself is two pure functions over a :class:`BreakerState` (:func:`admit` and
:func:`settle`), so the same rules serve the breaker kept in this process's memory
(:class:`CircuitBreaker`, one per workflow object, shared by every run of it in the process,
thread-safe, on ``runtime.clock.monotonic``) and the one shared by every process through a
store (``pyagent.durability.breakers``, on wall time, written with compare-and-swap).
"""

from __future__ import annotations

import dataclasses
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
    """Permission for one run; handed back to the breaker's ``release`` when the run ends.

    ``shared``: admitted by the breaker shared through a store (False: by this process's own,
    also when the shared one could not be reached).
    """

    generation: int
    trial: bool
    shared: bool = False


@dataclass(frozen=True)
class BreakerState:
    """Everything the state machine decides on; replaced, never changed in place.

    ``generation`` is bumped on every transition, so the outcome of a run admitted under an
    older state (started while closed, ended after the breaker opened) is ignored.
    ``trial_deadline``: when the trial runs in flight are given up (a shared breaker's trial
    whose process died never reports); None: never (this process's own breaker).
    """

    state: str = CLOSED
    generation: int = 0
    failures: int = 0
    opened_at: float | None = None
    trials: int = 0
    trials_ok: int = 0
    trial_deadline: float | None = None
    times_opened: int = 0


def _move(s: BreakerState, to: str, why: str, now: float) -> tuple[BreakerState, Transition]:
    changed = dataclasses.replace(s, state=to, generation=s.generation + 1, trials=0, trials_ok=0,
                                  trial_deadline=None)
    if to == OPEN:
        changed = dataclasses.replace(changed, opened_at=now, times_opened=s.times_opened + 1)
    elif to == CLOSED:
        changed = dataclasses.replace(changed, failures=0, opened_at=None)
    return changed, (s.state, to, why)


def admit(s: BreakerState, config: CircuitBreakerConfig, now: float, name: str, *,
          trial_timeout: float | None = None,
          ) -> tuple[BreakerState, Ticket | None, list[Transition], CircuitOpenError | None]:
    """Let a run in (a ticket) or refuse it (an error): the new state and the transitions made.

    The state returned is ``s`` itself when admitting changed nothing (a closed breaker, a
    refusal), so a shared breaker writes only when it must. ``trial_timeout``: seconds after
    which trials that have not reported are given up (their slots go to the next runs).
    """
    changes: list[Transition] = []
    if s.state == OPEN and now - (s.opened_at or 0.0) >= config.reset_timeout:
        s, change = _move(s, HALF_OPEN, f"reset_timeout of {config.reset_timeout:g}s passed", now)
        changes.append(change)
    if (s.state == HALF_OPEN and s.trials and s.trial_deadline is not None and now >= s.trial_deadline):
        s, change = _move(s, HALF_OPEN, f"{s.trials} trial run(s) did not report within "
                                        f"{trial_timeout or 0:g}s (their process stopped?): trying again", now)
        changes.append(change)
    if s.state == CLOSED:
        return s, Ticket(s.generation, False), changes, None
    if s.state == HALF_OPEN:
        if s.trials + s.trials_ok < config.half_open_requests:
            deadline = None if trial_timeout is None else now + trial_timeout
            s = dataclasses.replace(s, trials=s.trials + 1, trial_deadline=deadline)
            return s, Ticket(s.generation, True), changes, None
        return s, None, changes, CircuitOpenError(
            f"circuit breaker of workflow '{name}' is half-open and its "
            f"{config.half_open_requests} trial run(s) are in flight: run refused; "
            "try again when they finish"
        )
    wait = config.reset_timeout - (now - (s.opened_at or 0.0))
    return s, None, changes, CircuitOpenError(
        f"circuit breaker of workflow '{name}' is open after "
        f"{config.failure_threshold} consecutive failed runs: run refused without "
        f"calling any agent; it lets trial runs through in {max(wait, 0.0):.1f}s "
        f"(reset_timeout={config.reset_timeout:g}s)"
    )


def settle(s: BreakerState, config: CircuitBreakerConfig, now: float, ticket: Ticket,
           outcome: bool | None) -> tuple[BreakerState, list[Transition]]:
    """Record how an admitted run ended: True ok, False failed, None cancelled (not counted).

    Returns ``s`` itself when the outcome changes nothing (a success with no failure counted,
    an outcome from an older generation).
    """
    if ticket.generation != s.generation:
        return s, []
    if ticket.trial:
        if outcome is None:
            return dataclasses.replace(s, trials=max(s.trials - 1, 0)), []
        if not outcome:
            s, change = _move(s, OPEN, "a trial run failed", now)
            return s, [change]
        s = dataclasses.replace(s, trials=max(s.trials - 1, 0), trials_ok=s.trials_ok + 1)
        if s.trials_ok >= config.half_open_requests:
            s, change = _move(s, CLOSED, f"{s.trials_ok} trial run(s) succeeded", now)
            return s, [change]
        return s, []
    if outcome is None:
        return s, []
    if outcome:
        return (s, []) if s.failures == 0 else (dataclasses.replace(s, failures=0), [])
    s = dataclasses.replace(s, failures=s.failures + 1)
    if s.failures >= config.failure_threshold:
        s, change = _move(s, OPEN, f"{s.failures} consecutive failed runs", now)
        return s, [change]
    return s, []


def describe(s: BreakerState, config: CircuitBreakerConfig, now: float, *, rejected: int,
             shared: bool) -> dict[str, Any]:
    """The breaker's state as plain data (for get_state, get_metrics and events)."""
    state = s.state
    retry_in = None
    if state == OPEN:
        retry_in = max(0.0, config.reset_timeout - (now - (s.opened_at or 0.0)))
        if retry_in == 0.0:
            state = HALF_OPEN  # what the next run will find
            retry_in = None
    return {
        "state": state,
        "consecutive_failures": s.failures,
        "failure_threshold": config.failure_threshold,
        "reset_timeout": config.reset_timeout,
        "half_open_requests": config.half_open_requests,
        "trials_in_flight": s.trials,
        "retry_in": retry_in,
        "times_opened": s.times_opened,
        "rejected": rejected,
        "shared": shared,
    }


class CircuitBreaker:
    """Per-workflow breaker in this process's memory; see the module docstring for the states."""

    def __init__(self, name: str, config: CircuitBreakerConfig,
                 monotonic: Callable[[], float]) -> None:
        self.name = name
        self.config = config
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._s = BreakerState()
        self.rejected = 0

    def use_clock(self, monotonic: Callable[[], float]) -> None:
        """Read time from ``monotonic`` (the runtime's clock; swapped in tests)."""
        self._monotonic = monotonic

    @property
    def state(self) -> str:
        return self._s.state

    @property
    def consecutive_failures(self) -> int:
        return self._s.failures

    @property
    def trials_in_flight(self) -> int:
        return self._s.trials

    @property
    def total_opened(self) -> int:
        return self._s.times_opened

    def admit(self) -> tuple[Ticket | None, list[Transition], CircuitOpenError | None]:
        """Let a run in (a ticket) or refuse it (an error); also the transitions this caused."""
        with self._lock:
            self._s, ticket, changes, refusal = admit(self._s, self.config, self._monotonic(), self.name)
            if refusal is not None:
                self.rejected += 1
            return ticket, changes, refusal

    def release(self, ticket: Ticket, outcome: bool | None) -> list[Transition]:
        """Record how an admitted run ended: True ok, False failed, None cancelled (not counted)."""
        with self._lock:
            self._s, changes = settle(self._s, self.config, self._monotonic(), ticket, outcome)
            return changes

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state as plain data (for get_state, get_metrics and events)."""
        with self._lock:
            return describe(self._s, self.config, self._monotonic(), rejected=self.rejected, shared=False)


def breaker_for(workflow: Workflow, monotonic: Callable[[], float]) -> CircuitBreaker | None:
    """The workflow's breaker in this process (created on first use), or None when it has none configured.

    A shared breaker (``shared=True``) keeps one too: what runs use while the store cannot be reached.
    """
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
