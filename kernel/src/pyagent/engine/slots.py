"""How many runs of a workflow go on at once in this process: ``Workflow(max_active_runs=N)``.

Across processes sharing a store that is a run queue, ``pyagent serve`` replicas bound a
workflow's active runs when they take runs off the queue (``dequeue_runs``). Inside one
process the bound is a limiter per workflow: a run started while N runs of its workflow go
on here waits for one of them to end. A run holds its slot while it waits for people in
this process (it still holds its lease, so it is active), and gives it back when it ends or
suspends.

The limiter belongs to the event loop that made it (anyio's limiters do): a workflow run
from a new event loop (``asyncio.run`` again, ``run_sync``) gets a new one.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from pyagent.workflow import Workflow

#: Workflows whose slot the current task holds already: taking it again is a no-op.
_held: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("pyagent_slots_held", default=frozenset())


def _limiter(workflow: Workflow, bound: int) -> anyio.CapacityLimiter:
    token = anyio.lowlevel.current_token()
    found = workflow._runtime_data.get("run_slots")
    if found is None or found[0] != token or found[1].total_tokens != bound:
        found = (token, anyio.CapacityLimiter(bound))
        workflow._runtime_data["run_slots"] = found
    limiter: anyio.CapacityLimiter = found[1]
    return limiter


@contextlib.asynccontextmanager
async def run_slot(workflow: Workflow,
                   while_waiting: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> AsyncIterator[None]:
    """Hold one of ``workflow``'s ``max_active_runs`` slots in this process for the block.

    Waits for a slot when all are taken; ``while_waiting()`` runs meanwhile (keeping alive a
    lease held already) and is cancelled once the slot is taken. Unbounded workflows, and a
    task that holds the workflow's slot already, pass straight through.
    """
    bound = workflow.max_active_runs
    held = _held.get()
    if bound is None or id(workflow) in held:
        yield
        return
    limiter = _limiter(workflow, bound)
    if limiter.available_tokens >= 1 or while_waiting is None:
        await limiter.acquire()
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(while_waiting)
            await limiter.acquire()
            tg.cancel_scope.cancel()
    mark = _held.set(held | {id(workflow)})
    try:
        yield
    finally:
        _held.reset(mark)
        limiter.release()
