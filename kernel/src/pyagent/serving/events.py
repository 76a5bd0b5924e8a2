"""``orchestrator.emit``: hand an event to the subscriptions that name it and start their runs.

While the orchestrator serves, runs are recorded (with a store) and started by its host and
``emit`` returns at once; otherwise the runs happen right here, concurrently, and ``emit``
returns when they have finished. Either way it returns the started runs' ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.errors import ConfigurationError
from pyagent.model import events as ev
from pyagent.model.events import Event, EventPayload

if TYPE_CHECKING:
    from pyagent.controller import Orchestrator

log = logging.getLogger("pyagent.serve")


def payload_of(name: str, payload: Any, fields: dict[str, Any]) -> Any:
    """The event as subscribers see it: a mapping becomes an EventPayload (attributes and keys)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"emit() needs an event name (a non-empty string), got {name!r}")
    if payload is None:
        return EventPayload(fields)
    if isinstance(payload, Mapping):
        return EventPayload({**payload, **fields})
    if fields:
        raise ConfigurationError(
            f"emit({name!r}, ...) got a {type(payload).__name__} payload and keyword fields: pass "
            "a dict payload to add fields to, or only one of them")
    return payload


def _copy(event: Any) -> Any:
    # Each run gets its own copy: one workflow changing its input must not change another's.
    return EventPayload(event) if isinstance(event, EventPayload) else event


def select(orchestrator: Orchestrator, name: str, event: Any) -> list[Any]:
    """The subscriptions that start a run for this event; filter errors and no subscriber reported."""
    from pyagent.plugins import get_runtime

    subs = [t for t in orchestrator.triggers if name in getattr(t, "events", ())]
    runtime = get_runtime()
    if not subs:
        orchestrator.unhandled_events[name] += 1
        runtime.broadcast(Event(ev.EVENT_UNHANDLED, data={"event": name}), extra=orchestrator._listeners)
        return []
    chosen = []
    for sub in subs:
        try:
            if sub.accepts(event):
                chosen.append(sub)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("the filter of %r failed on event %r: %s", sub, name, error)
            runtime.broadcast(Event(ev.EVENT_FILTER_FAILED, workflow=sub.workflow.name,
                                    data={"event": name, "error": error}), extra=orchestrator._listeners)
    return chosen


async def emit(orchestrator: Orchestrator, name: str, payload: Any = None, **fields: Any) -> list[str]:
    """See ``Orchestrator.emit``."""
    from pyagent.engine.run import new_run_id

    event = payload_of(name, payload, fields)
    chosen = select(orchestrator, name, event)
    host = orchestrator._host
    if host is not None:
        ids = []
        for sub in chosen:
            sub_ = await host.submit(sub.workflow, _copy(event), trigger="event", source=name)
            ids.append(sub_.run_id)
        return ids
    ids = [new_run_id() for _ in chosen]
    errors: list[BaseException] = []

    async def one(sub: Any, run_id: str) -> None:
        try:
            await orchestrator.run_workflow(sub.workflow, _copy(event), run_id=run_id,
                                            trigger={"kind": "event", "source": name})
        except Exception as exc:  # refused before running (bad configuration): raised below
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for sub, run_id in zip(chosen, ids, strict=True):
            tg.start_soon(one, sub, run_id)
    if errors:
        raise errors[0]
    return ids


def emit_sync(orchestrator: Orchestrator, name: str, payload: Any = None, **fields: Any) -> list[str]:
    """See ``Orchestrator.emit_sync``."""
    import functools

    from pyagent._sync import run_blocking
    from pyagent.engine.run import new_run_id

    host = orchestrator._host
    call = functools.partial(emit, orchestrator, name, payload, **fields)
    if host is not None and host.in_loop_thread():
        # Plain code on the serving loop cannot wait: choose now, record and start right after.
        event = payload_of(name, payload, fields)
        ids = []
        for sub in select(orchestrator, name, event):
            run_id = new_run_id()
            ids.append(run_id)
            host.start_soon(functools.partial(host.submit, sub.workflow, _copy(event), run_id=run_id,
                                              trigger="event", source=name))
        return ids
    if host is not None:
        from anyio.from_thread import run as run_in_loop

        return run_in_loop(call, token=host.token)
    # Plain code (or plain code inside some other event loop: then on a loop of its own).
    return run_blocking(call, name="pyagent-emit")
