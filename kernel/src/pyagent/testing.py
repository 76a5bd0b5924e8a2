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
    """A clock that only moves when told to; ``sleep`` advances it at once and records the delay."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class PassForward:
    """The smallest sequential pattern: each step gets the previous completed step's output.

    For the tests of plugins that need runs but no pattern plugin (monitors, stores):
    ``runtime.register(PassForward.plugin(), "pass-forward")`` makes it the ``sequential``
    pattern of that runtime.
    """

    async def execute(self, run: Any) -> Any:
        value = run.input
        for step in run.workflow.steps:
            rec = await run.run_step(step, value)
            if rec.status.value == "completed":
                value = rec.output
        return value

    @classmethod
    def plugin(cls, name: str = "sequential") -> Any:
        """A plugin object registering this pattern as ``name``."""
        from pyagent.hookspecs import hookimpl

        pattern = cls()

        class Plugin:
            @hookimpl
            def pyagent_register_patterns(self, register: Any) -> None:
                register(name, pattern)

        return Plugin()
