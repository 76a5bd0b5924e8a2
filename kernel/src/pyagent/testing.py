"""Deterministic stand-ins for tests and demos: a scripted language model and a manual clock."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pyagent.clock import Clock


class ScriptedModel:
    """A language model that replays given replies, or answers with a function of the prompt.

    ``ScriptedModel(["yes", "no"])`` answers "yes" then "no" (then fails: a script that runs
    out is a test bug, not a reason to invent text); ``cycle=True`` repeats the script;
    ``ScriptedModel(lambda prompt: ...)`` computes each reply from the user prompt (the
    function may be a coroutine function).
    Every call is kept in ``calls`` (the chat messages), so tests can assert what was asked.
    """

    def __init__(
        self,
        replies: Iterable[str] | Callable[[str], str | Awaitable[str]] | None = None,
        *,
        name: str = "scripted",
        cycle: bool = False,
    ) -> None:
        self.name = name
        self.calls: list[list[dict[str, str]]] = []
        self._fn: Callable[[str], str | Awaitable[str]] | None = None
        self._replies: Any = None
        if callable(replies):
            self._fn = replies
        else:
            items = list(replies or [])
            if not items:
                raise ValueError("ScriptedModel needs replies (a list of strings) or a function of the prompt")
            self._replies = itertools.cycle(items) if cycle else iter(items)

    @property
    def prompts(self) -> list[str]:
        """The user prompt of every call so far."""
        return [m[-1]["content"] for m in self.calls]

    async def complete(self, messages: list[dict[str, str]]) -> str:
        self.calls.append(messages)
        prompt = messages[-1]["content"]
        if self._fn is not None:
            reply = self._fn(prompt)
            if inspect.isawaitable(reply):
                reply = await reply
            return str(reply)
        try:
            return str(next(self._replies))
        except StopIteration:
            raise RuntimeError(
                f"ScriptedModel {self.name!r} ran out of replies after {len(self.calls) - 1} calls: "
                "give it more replies or cycle=True"
            ) from None


class CountingAgents:
    """Function agents by name that count their calls; names put in ``failing`` raise.

    ``agents["Research"]`` is an agent returning ``f"{input}>Research"``; ``agents.calls``
    says how often each ran, which is what resume and retry tests assert on.
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.failing: set[str] = set()

    def __getitem__(self, name: str) -> Callable[[Any], Any]:
        def fn(x: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.failing:
                raise RuntimeError(f"{name} is down")
            return f"{x}>{name}"

        fn.__name__ = name.lower()
        return fn


class ManualClock(Clock):
    """A clock that only moves when told to; ``sleep`` advances it at once and records the delay.

    ``sleep_until(when)`` waits until the clock is moved to ``when`` or past it: by
    ``advance``/``set`` (which release every waiter whose instant has come), or step by step
    with ``await run_until(when)``/``await run_for(seconds)``, which stop at each waiter's
    instant and let the woken tasks run until they block again. So a test drives months of
    cron ticks in milliseconds, one tick at a time. Move it from the event loop's thread.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._release()

    def set(self, when: float) -> None:
        """Move the clock to ``when`` (never backwards) and release the waiters that are due."""
        self.now = max(self.now, when)
        self._release()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self._release()

    async def sleep_until(self, when: float) -> None:
        if when <= self.now:
            return
        import anyio

        event = anyio.Event()
        entry = (when, event)
        self._waiters.append(entry)
        try:
            await event.wait()
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    @property
    def waiting(self) -> list[float]:
        """The instants tasks are waiting for, earliest first."""
        return sorted(w for w, _ in self._waiters)

    async def run_until(self, when: float) -> None:
        """Move the clock to ``when``, stopping at every waiter's instant on the way.

        At each stop the waiters that are due are released and every task runs until it
        blocks again (``anyio.wait_all_tasks_blocked``), so what a woken task schedules next
        (the following tick) is seen in order. Work waiting on threads (a database driver) is
        not waited for: wait on its outcome as well.
        """
        await _settle()
        while True:
            due = [w for w, _ in self._waiters if w <= when]
            if not due:
                break
            self.now = max(self.now, min(due))
            self._release()
            await _settle()
        self.now = max(self.now, when)
        self._release()
        await _settle()

    async def run_for(self, seconds: float) -> None:
        """``run_until(now + seconds)``."""
        await self.run_until(self.now + seconds)

    def _release(self) -> None:
        for entry in [e for e in self._waiters if e[0] <= self.now]:
            self._waiters.remove(entry)
            entry[1].set()


async def _settle() -> None:
    """Let every other task run until none is runnable: ``anyio.wait_all_tasks_blocked``,
    except on asyncio, where anyio's version polls every 0.1 s; there the loop's ready queue
    is watched instead (several idle turns in a row, so chained wake-ups are seen)."""
    import anyio
    import anyio.lowlevel
    import sniffio

    if sniffio.current_async_library() == "asyncio":
        import asyncio

        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        if ready is not None:
            idle = 0
            while idle < 3:
                await anyio.lowlevel.checkpoint()
                idle = idle + 1 if not ready else 0
            return
    await anyio.wait_all_tasks_blocked()
