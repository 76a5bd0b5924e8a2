"""Least capability: what an agent may hand off to and which tools it may call.

An agent's grants are ``agent(..., can_handoff_to=[...])`` (agents or their names) and its
``tools=`` list. ``None`` (the default for ``can_handoff_to``) grants everything; an empty
list grants nothing. Grants are by name. The handoff machinery checks handoffs itself; a
model plugin's tool-call loop calls :func:`check_tool_call` before running a tool and, when
it raises, :func:`record_denial` and returns ``error.refusal`` to the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pyagent.errors import CapabilityError, ConfigurationError
from pyagent.model import audit
from pyagent.model.events import CAPABILITY_DENIED

if TYPE_CHECKING:
    from pyagent.model.context import RunContext


def _name_of(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return str(value["name"])
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        return name
    raise ConfigurationError(f"{what} must hold agents, tools or their names, got {value!r}")


def handoff_grant(value: Any) -> frozenset[str] | None:
    """``can_handoff_to=`` as a set of agent names (None: no bound)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    return frozenset(_name_of(v, "can_handoff_to=") for v in value)


def tool_names(agent: Any) -> list[str]:
    """The names of the tools ``agent`` was given (``tools=``): a tool's ``name``, its ``__name__``, or the string."""
    tools = getattr(agent, "tools", None)
    if not tools:
        return []
    return [_name_of(t, "tools=") for t in tools]


def check_handoff(agent: Any, target: str, *, mode: str = "") -> None:
    """Raise CapabilityError if ``agent`` has a ``can_handoff_to`` grant that leaves out ``target``."""
    grant = getattr(agent, "can_handoff_to", None)
    if grant is None:
        return
    names = grant if isinstance(grant, frozenset) else handoff_grant(grant)
    assert names is not None
    if target not in names:
        raise CapabilityError(agent=agent.name, capability="handoff", target=target,
                              granted=sorted(names), mode=mode)


def check_tool_call(agent: Any, tool_name: str, *, granted: Iterable[str] | None = None) -> None:
    """Raise CapabilityError unless ``tool_name`` is one of ``agent``'s ``tools=``.

    A model may ask for any tool name; only the agent's own tools are granted. ``granted``
    names them when they are not all in ``agent.tools`` (tools a tool source contributed to
    this run, after its ``tool_filter``).
    """
    granted = tool_names(agent) if granted is None else list(granted)
    if tool_name not in granted:
        raise CapabilityError(agent=getattr(agent, "name", str(agent)), capability="tool",
                              target=tool_name, granted=granted, mode="tool")


def record_denial(error: CapabilityError, *, ctx: RunContext | None = None, **data: Any) -> None:
    """Audit a refused tool call (or any denial not made through a handoff call).

    Inside a workflow run it goes to the run's audit trail and history and to its listeners as a
    ``capability.denied`` event; outside a run the event is broadcast to every monitor.
    ``data`` adds details (e.g. the model's ``call_id``).
    """
    audit.report(CAPABILITY_DENIED, {"capability": error.capability, "agent": error.agent,
                                     "target": error.target, "denial": str(error),
                                     "mode": error.mode or error.capability, "denied": True, **data},
                 ctx=ctx, source=error.agent)
