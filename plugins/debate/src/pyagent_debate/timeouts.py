"""A time limit on one agent call, so an agent that never answers cannot hang the pattern."""

from __future__ import annotations

import numbers
from typing import Any

import anyio

from pyagent.context import RunContext
from pyagent.errors import ConfigurationError


def check_timeout(value: Any) -> float | None:
    """``None`` (no limit) or seconds > 0, with an error that says how to fix it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigurationError(
            f"timeout must be None (no limit) or seconds > 0 for each agent call, got {value!r}: "
            "e.g. timeout=60"
        )
    return float(value)


async def answer(agent: Any, input: Any, ctx: RunContext, timeout: float | None) -> Any:
    """The agent's output; past ``timeout`` the call is cancelled and ``TimeoutError`` raised."""
    if timeout is None:
        return await agent.run(input, ctx)
    with anyio.move_on_after(timeout):
        return await agent.run(input, ctx)
    raise TimeoutError(f"no answer within timeout={timeout:g}s (the agent was cancelled)")
