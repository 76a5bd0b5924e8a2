"""The ``event`` trigger: a workflow subscribed to a named event (``orchestrator.on_event``).

Registered through ``pyagent_register_triggers`` like any trigger plugin; the kernel's
``orchestrator.emit`` hands each emitted event to the subscriptions that name it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyagent.errors import ConfigurationError
from pyagent.hookspecs import hookimpl

if TYPE_CHECKING:
    from pyagent.controller import Orchestrator
    from pyagent.hookspecs import Register
    from pyagent.workflow import Workflow


class EventSubscription:
    """Starts ``workflow`` for every emitted ``name`` event that ``filter`` accepts.

    ``filter(event) -> bool`` sees the payload (fields as attributes and keys); no filter
    accepts every event. A filter that raises starts nothing and is reported as an
    ``event.filter_failed`` event; the other subscriptions are not affected.
    """

    def __init__(self, orchestrator: Orchestrator, workflow: Workflow, *, name: str,
                 filter: Callable[[Any], Any] | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"on_event() needs an event name (a non-empty string), got {name!r}")
        if filter is not None:
            if not callable(filter):
                raise ConfigurationError(f"filter={filter!r} is not callable: pass a function of the event")
            if inspect.iscoroutinefunction(filter):
                raise ConfigurationError(
                    "filter is a coroutine function: filters are called synchronously when the event is "
                    "emitted; pass a plain function (e.g. lambda e: e.priority == 'high')")
        self.orchestrator = orchestrator
        self.workflow = workflow
        self.name = name
        self.filter = filter
        self.events = (name,)
        self.paused = False

    def accepts(self, event: Any) -> bool:
        """Whether this subscription starts a run for ``event`` (exceptions propagate)."""
        if self.paused:
            return False
        return self.filter is None or bool(self.filter(event))

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def remove(self) -> None:
        """Unsubscribe: later events no longer start this workflow."""
        self.orchestrator.remove_trigger(self)

    def describe(self) -> str:
        how = " (filtered)" if self.filter is not None else ""
        return f"event {self.name!r} -> {self.workflow.name!r}{how}"

    def __repr__(self) -> str:
        return f"EventSubscription({self.describe()})"


@hookimpl
def pyagent_register_triggers(register: Register) -> None:
    register("event", EventSubscription)
