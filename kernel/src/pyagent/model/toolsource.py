"""Tool sources: entries of ``tools=[...]`` that contribute several tools, found when a run needs them.

A plugin's tool source (an MCP server's tools, say) cannot list its tools when the agent is
built: it has to connect first, and what it connects to should live as long as the run that
uses it, not as long as one model turn. So a source is asked for its tools each time an agent
using it runs, with a :class:`ToolScope` that holds what the source opened:

- inside a workflow run, the scope is the run's: opened on first use, closed when the run ends,
  so every agent and turn of the run shares one connection;
- outside any run (an agent or a team pattern called directly), it is the agent run's own;
- :func:`shared_tool_scope` is one scope per event loop, for sources that pool connections for
  the life of the process (a long-running server), closed when the loop ends.

What a source keeps open is an async context manager entered by :meth:`ToolScope.enter`. The
scope enters it in a host task of its own and exits it there, because the connections of
anyio-based clients hold task groups that must be exited by the task that entered them, while
the scope's users (the tool calls of a run) come and go in other tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import anyio

if TYPE_CHECKING:
    from pyagent.model.tools import Tool

log = logging.getLogger("pyagent.tools")

T = TypeVar("T")

CLOSE_TIMEOUT = 10.0
"""Seconds a scope waits for each thing it opened to close before leaving it to the event loop."""


@runtime_checkable
class ToolSource(Protocol):
    """Something in an agent's ``tools=[...]`` that contributes tools when a run first needs them.

    ``load_tools(scope)`` returns the tools (``Tool`` objects, e.g. ``Tool.from_schema(...)``);
    whatever it opens to list or call them it keeps in ``scope`` (see :meth:`ToolScope.enter`).
    It is called at the start of every agent run that uses the source, so it should return the
    tools it already listed in that scope rather than ask again.
    """

    name: str

    async def load_tools(self, scope: ToolScope) -> Sequence[Tool]: ...


def is_tool_source(value: Any) -> bool:
    """True for a tool source (an object with ``load_tools``), as opposed to a function or a Tool."""
    return callable(getattr(value, "load_tools", None)) and hasattr(value, "name")


class _Entry:
    __slots__ = ("done", "error", "ready", "stop", "value")

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ToolScope:
    """What the tool sources of one run (or agent run, or event loop) opened, closed together.

    ``await scope.enter(key, factory)`` enters the async context manager ``factory()`` once per
    key and returns what it yields; later calls with the same key (concurrent ones too) get the
    same value. ``await scope.discard(key)`` closes one early (a connection that broke, so the
    next use opens a new one); ``await scope.aclose()`` closes everything, most recent first.
    ``scope.values`` is a plain dict for what sources want to remember per scope (tool lists).
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self.values: dict[Hashable, Any] = {}
        self.closed = False

    async def enter(self, key: Hashable, factory: Callable[[], AbstractAsyncContextManager[T]]) -> T:
        if self.closed:
            raise RuntimeError("this tool scope is closed: its run has ended")
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry()
            self._entries[key] = entry
            _spawn(_host, entry, factory)
        await entry.ready.wait()
        if entry.error is not None:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise entry.error
        return entry.value  # type: ignore[no-any-return]

    def opened(self, key: Hashable) -> bool:
        """Whether ``key`` is open (or opening) in this scope."""
        return key in self._entries

    async def discard(self, key: Hashable) -> None:
        """Close what ``key`` opened, if anything; the next :meth:`enter` opens it again."""
        entry = self._entries.pop(key, None)
        self.values.pop(key, None)
        if entry is not None:
            await _close(entry)

    async def aclose(self) -> None:
        """Close everything this scope opened (waiting a bounded time for each)."""
        self.closed = True
        entries = list(self._entries.values())
        self._entries.clear()
        self.values.clear()
        for entry in reversed(entries):
            await _close(entry)

    def __repr__(self) -> str:
        return f"ToolScope(open={len(self._entries)}, closed={self.closed})"


async def _host(entry: _Entry, factory: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
    """Enter ``factory()``, hand over its value, wait to be told to stop, exit: all in this task."""
    try:
        async with factory() as value:
            entry.value = value
            entry.ready.set()
            await entry.stop.wait()
    except anyio.get_cancelled_exc_class():
        entry.error = entry.error or RuntimeError("the event loop ended before the tool source opened")
        raise
    except BaseException as exc:  # a host task must never crash the event loop
        if not entry.ready.is_set():
            entry.error = exc
        else:
            log.debug("a tool source's connection closed with an error: %r", exc)
    finally:
        entry.ready.set()
        entry.done.set()


async def _close(entry: _Entry) -> None:
    entry.stop.set()
    # Shielded: a run that was cancelled still closes what it opened (a server subprocess).
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        await entry.done.wait()


_detached: set[Any] = set()  # asyncio keeps only weak references to tasks: hold them here


def _spawn(fn: Callable[..., Any], *args: Any) -> None:
    """Start ``fn(*args)`` as a task of the event loop itself, outside the caller's task group."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn, *args)
        return
    import asyncio

    task = asyncio.get_running_loop().create_task(fn(*args))
    _detached.add(task)
    task.add_done_callback(_detached.discard)


_shared: dict[Any, ToolScope] = {}


def _loop_key() -> Any:
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_root_task()
    import asyncio

    return asyncio.get_running_loop()


def shared_tool_scope() -> ToolScope:
    """The scope that lives as long as the running event loop: for pooled, process-wide connections.

    What it opened closes when the loop ends (its host tasks are cancelled with the loop), or
    earlier with ``await shared_tool_scope().aclose()``.
    """
    key = _loop_key()
    scope = _shared.get(key)
    if scope is None or scope.closed:
        for stale in [k for k, s in _shared.items() if s.closed or _ended(k)]:
            del _shared[stale]
        scope = ToolScope()
        _shared[key] = scope
    return scope


def _ended(key: Any) -> bool:
    closed = getattr(key, "is_closed", None)
    return bool(closed()) if callable(closed) else False


def scope_for(run: Any) -> ToolScope | None:
    """The tool scope of a workflow run (created on first use), or None outside any run."""
    if run is None:
        return None
    scope: ToolScope | None = getattr(run, "tool_scope", None)
    if scope is None or scope.closed:
        scope = ToolScope()
        run.tool_scope = scope
    return scope


__all__ = ["ToolScope", "ToolSource", "is_tool_source", "scope_for", "shared_tool_scope"]
