"""Circuit breakers shared by every process running a workflow against one store (``shared=True``).

The rules are the engine's (:mod:`pyagent.engine.resilience`: ``admit`` and ``settle``, pure
functions); this module keeps their state in the store instead of in memory: one row per
workflow name, read with ``get_breaker`` and replaced with ``swap_breaker``, a
compare-and-swap on the row's version. A swap lost to another process is retried on a fresh
read, so failures are counted across processes, a breaker one process opened is open for all,
and at most ``half_open_requests`` trial runs are let through in all. Time is wall time
(``runtime.clock.time()``), the one clock processes share.

Cost: a run reads the row when admitted and when it ends (none when it is cancelled while
closed); it writes only when the state changes (a failure counted, a reset, a transition, a
trial taken or returned). A breaker that is not shared never comes here.

When the store cannot be reached within ``store_timeout`` seconds the breaker **fails open to
this process's own breaker** (the one a breaker that is not shared uses): runs are neither
held up nor refused because the store is away, and they are still protected by what this
process sees. The store is tried again after ``RETRY_AFTER`` seconds; the fall-back and the
return are logged once each. A trial run whose process died never reports: trials that have
not reported within ``trial_timeout`` seconds (300 by default) are given up and their slots go to the next runs.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from pyagent.durability.store import BreakerRecord, BreakerStore, shares_breakers
from pyagent.engine.resilience import (
    BreakerState,
    Ticket,
    Transition,
    admit,
    breaker_for,
    describe,
    settle,
)
from pyagent.errors import CircuitOpenError, ConfigurationError, DriverLoadFailure, PyAgentError

if TYPE_CHECKING:
    from pyagent.clock import Clock
    from pyagent.durability.store import Store
    from pyagent.model.policies import CircuitBreakerConfig
    from pyagent.workflow import Workflow

log = logging.getLogger("pyagent.durable")
T = TypeVar("T")

#: Seconds a breaker that could not reach its store uses this process's own before trying again.
RETRY_AFTER = 5.0

# One open store per URL for every shared breaker of the process (a store is safe to call
# concurrently): a run's admission and outcome cost one read each, not an open and a close too.
_HANDLES: dict[str, tuple[int, BreakerStore]] = {}
_HANDLES_LOCK = threading.Lock()


def _held(url: str) -> BreakerStore | None:
    with _HANDLES_LOCK:
        held = _HANDLES.get(url)
    return held[1] if held is not None and held[0] == os.getpid() else None


async def _handle(url: str, fresh: Store | None) -> BreakerStore:
    """The open store for ``url``: the one held, or ``fresh`` (made, not open yet) opened now."""
    from pyagent.durability.stores import _close, safe_url

    held = _held(url)
    if held is not None:
        return held
    assert fresh is not None
    try:
        await fresh.open()
    except PyAgentError:
        raise
    except Exception as exc:
        raise DriverLoadFailure(f"circuit_breaker.storage {safe_url(url)!r} could not be opened: "
                                f"{type(exc).__name__}: {exc}") from exc
    if not shares_breakers(fresh):
        await _close(fresh)
        raise ConfigurationError(
            f"circuit_breaker shared=True: the store {safe_url(url)} cannot keep a shared breaker (it has "
            "no get_breaker/swap_breaker): upgrade its plugin (pyagent-sql keeps them from schema "
            "version 5 on), use a store that has them (memory://, sqlite://, postgresql://), or set shared=False"
        )
    store = cast("BreakerStore", fresh)
    with _HANDLES_LOCK:
        held_now = _HANDLES.get(url)
        if held_now is None or held_now[0] != os.getpid():
            _HANDLES[url] = (os.getpid(), store)
            return store
    await _close(fresh)  # a concurrent first use opened one too: use that one
    return held_now[1]


def _forget(url: str, store: BreakerStore) -> None:
    """Drop a handle that failed, so the next run opens the store afresh."""
    with _HANDLES_LOCK:
        held = _HANDLES.get(url)
        if held is not None and held[1] is store:
            del _HANDLES[url]


#: What a breaker's state and its stored row have in common, field for field.
_SHARED = ("state", "generation", "failures", "opened_at", "trials", "trials_ok", "trial_deadline", "times_opened")


def _state_of(record: BreakerRecord | None) -> tuple[BreakerState, int]:
    if record is None:
        return BreakerState(), 0
    return BreakerState(**{f: getattr(record, f) for f in _SHARED}), record.version


def _record_of(name: str, s: BreakerState, version: int, now: float) -> BreakerRecord:
    return BreakerRecord(name=name, updated_at=now, version=version, **{f: getattr(s, f) for f in _SHARED})


class SharedBreaker:
    """One workflow's breaker kept in a store; see the module docstring."""

    def __init__(
        self, workflow: Workflow, config: CircuitBreakerConfig, url: str, clock: Clock
    ) -> None:
        self.workflow = workflow
        self.name = workflow.name
        self.config = config
        self.url = url
        self.clock = clock
        self.rejected = 0
        self._seen = BreakerState()  # the row as this process last read or wrote it
        self._down_until: float | None = None  # monotonic: until then, this process's own breaker

    # -- the store, bounded ---------------------------------------------------------------------

    async def _change(self, fresh: Store | None,
                      change: Callable[[BreakerState, float], tuple[BreakerState, T]]) -> T:
        """Apply ``change`` to the stored state: read, compute, compare-and-swap; again if another
        process wrote in between. Nothing is written when ``change`` returns the state it was given."""
        store = await _handle(self.url, fresh)
        try:
            attempt = 0
            while True:
                record = await store.get_breaker(self.name)
                state, version = _state_of(record)
                now = self.clock.time()
                new, value = change(state, now)
                if new is state:
                    self._seen = state
                    return value
                if await store.swap_breaker(
                    _record_of(self.name, new, version + 1, now),
                    expected=version,
                ):
                    self._seen = new
                    return value
                attempt += 1  # another process wrote first: read again, after a short random pause
                await anyio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))
        except ConfigurationError:
            raise
        except BaseException:
            _forget(self.url, store)
            raise

    async def _bounded(
        self, change: Callable[[BreakerState, float], tuple[BreakerState, T]]
    ) -> tuple[bool, T | None]:
        """(True, value) from the store, or (False, None) when it failed or took too long."""
        from pyagent.durability.stores import make_store, safe_url

        # Made outside the time limit: the first use imports the store's driver, which takes what
        # it takes (and cannot be interrupted); a driver that is not installed is an error, not an
        # outage. Then opening and every call are bounded.
        fresh = None if _held(self.url) is not None else make_store(self.url, setting="circuit_breaker.storage")
        try:
            with anyio.fail_after(self.config.store_timeout):
                value = await self._change(fresh, change)
        except ConfigurationError:
            raise
        except Exception as exc:
            if self._down_until is None:
                log.warning(
                    "circuit breaker of %r: its store %s cannot be reached (%s: %s); this process "
                    "uses its own breaker and tries the store again in %gs",
                    self.name,
                    safe_url(self.url),
                    type(exc).__name__,
                    str(exc) or f"no answer within {self.config.store_timeout:g}s",
                    RETRY_AFTER,
                )
            self._down_until = self.clock.monotonic() + RETRY_AFTER
            return False, None
        if self._down_until is not None:
            log.info(
                "circuit breaker of %r: its store %s answers again; the breaker is shared again",
                self.name,
                safe_url(self.url),
            )
            self._down_until = None
        return True, value

    def _local(self) -> Any:
        breaker = breaker_for(self.workflow, self.clock.monotonic)
        assert breaker is not None
        return breaker

    # -- what a run calls -------------------------------------------------------------------------

    async def admit(self) -> tuple[Ticket | None, list[Transition], CircuitOpenError | None]:
        """Let a run in (a ticket) or refuse it (an error); also the transitions this caused."""
        if self._down_until is None or self.clock.monotonic() >= self._down_until:

            def change(s: BreakerState, now: float) -> tuple[BreakerState, Any]:
                new, ticket, changes, refusal = admit(
                    s, self.config, now, self.name, trial_timeout=self.config.trial_timeout
                )
                return new, (ticket, changes, refusal)

            ok, value = await self._bounded(change)
            if ok and value is not None:
                ticket, changes, refusal = value
                if refusal is not None:
                    self.rejected += 1
                    return None, changes, refusal
                return Ticket(ticket.generation, ticket.trial, shared=True), changes, None
        ticket, changes, refusal = self._local().admit()
        if refusal is not None:
            self.rejected += 1
        return ticket, changes, refusal

    async def release(self, ticket: Ticket, outcome: bool | None) -> list[Transition]:
        """Record how an admitted run ended: True ok, False failed, None cancelled (not counted)."""
        if not ticket.shared:
            changes: list[Transition] = self._local().release(ticket, outcome)
            return changes
        if outcome is None and not ticket.trial:
            return []  # nothing to count, nothing to give back: no need to read

        def change(s: BreakerState, now: float) -> tuple[BreakerState, list[Transition]]:
            return settle(s, self.config, now, ticket, outcome)

        ok, value = await self._bounded(change)
        return value if ok and value is not None else []

    def snapshot(self) -> dict[str, Any]:
        """The breaker as this process last read it from the store (plain data, no store call)."""
        return describe(
            self._seen, self.config, self.clock.time(), rejected=self.rejected, shared=True
        )

    async def refresh(self) -> dict[str, Any]:
        """The breaker as the store holds it now (one read); see :meth:`snapshot`."""

        def change(s: BreakerState, now: float) -> tuple[BreakerState, None]:
            return s, None

        await self._bounded(change)
        return self.snapshot()


def shared_breaker(workflow: Workflow, clock: Clock, *candidates: str | None) -> SharedBreaker:
    """The workflow's shared breaker (made on first use), kept in ``circuit_breaker.storage`` or
    else the first of ``candidates`` (the run's checkpoint store, the orchestrator's store)."""
    config = workflow.circuit_breaker
    assert config is not None and config.shared
    url = config.storage or next((c for c in candidates if c), None)
    if url is None:
        raise ConfigurationError(
            f"workflow {workflow.name!r}: circuit_breaker shared=True keeps the breaker in a store, and this "
            "run has none: give circuit_breaker={'shared': True, 'storage': 'postgresql://...'}, checkpoint "
            "the workflow (checkpointing={'storage': ...}), or run it from an orchestrator with a store"
        )
    data = workflow._runtime_data
    breaker: SharedBreaker | None = data.get("shared_breaker")
    if breaker is None or breaker.config is not config or breaker.url != url:
        breaker = SharedBreaker(workflow, config, url, clock)
        data["shared_breaker"] = breaker
    else:
        breaker.clock = clock
    return breaker


def circuit_snapshot(workflow: Workflow, clock: Clock) -> dict[str, Any] | None:
    """The workflow's breaker as plain data: the shared one as last seen here, or this process's."""
    config = workflow.circuit_breaker
    if config is None:
        return None
    if config.shared:
        shared: SharedBreaker | None = workflow._runtime_data.get("shared_breaker")
        if shared is not None and shared.config is config:
            return shared.snapshot()
        return describe(BreakerState(), config, clock.time(), rejected=0, shared=True)
    breaker = breaker_for(workflow, clock.monotonic)
    assert breaker is not None
    return breaker.snapshot()
