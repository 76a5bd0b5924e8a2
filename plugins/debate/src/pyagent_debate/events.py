"""Debate events, delivered to every installed monitor."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import Event, get_runtime

PATTERN = "debate"


def emit(kind: str, run_id: str, *, agent: str | None = None, status: str | None = None,
         **data: Any) -> None:
    """Broadcast one event; a failing monitor is logged by the runtime, never raised here."""
    event = Event(kind, workflow=PATTERN, run_id=run_id, task=agent, status=status,
                  data={"pattern": PATTERN, **data})
    get_runtime().broadcast(event)
