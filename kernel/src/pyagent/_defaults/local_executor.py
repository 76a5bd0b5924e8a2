"""The default executor: agents run as coroutines on the caller's event loop."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from pyagent.model.context import RunContext


class LocalExecutor:
    """Runs each agent call in the current event loop (asyncio or trio)."""

    name = "local"
    inline = True  # agents run on the caller's event loop: the engine may call them directly

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"the local executor takes no options, got {sorted(options)}")

    def call(self, agent: Any, input: Any, ctx: RunContext) -> Awaitable[Any]:
        # Returns the agent's coroutine itself: no extra await layer on the hot path.
        return agent.run(input, ctx)  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None
