"""pyagent-a2a: remote Agent2Agent (A2A) agents as pyagent agents, and workflows served over A2A.

``remote_agent("http://127.0.0.1:9999")`` reads a remote Agent Card and is an agent like any
other (in every pattern, in team routing, in handoffs, audited as remote); ``pyagent a2a serve
FILE`` publishes a file's workflows, one Agent Card each. Built on the official ``a2a-sdk``,
imported when first used.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .client import (
    A2A_STATUS,
    DEFAULT_TIMEOUT,
    RemoteAgent,
    RemoteAgentError,
    fetch_card,
    http_client,
    remote_agent,
)


def _commands() -> Any:
    from .cli import a2a

    return a2a


@hookimpl
def pyagent_register_commands(register: Any) -> None:
    register("a2a", _commands)


__all__ = ["A2A_STATUS", "DEFAULT_TIMEOUT", "RemoteAgent", "RemoteAgentError", "fetch_card", "http_client",
           "remote_agent"]
