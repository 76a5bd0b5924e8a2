"""Deterministic stand-ins for tests and demos: a scripted language model and a manual clock."""

from __future__ import annotations

import inspect
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyagent.clock import Clock
from pyagent.model.language import ModelRequest, ModelResponse, ToolCall, Usage


@dataclass
class Reply:
    """One scripted model turn with everything a real model can return.

    ``ScriptedModel([Reply(tool_calls=[tool_call("get_invoice", id=42)], usage=(120, 8)), "Paid."])``
    """

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: tuple[int, int] | Usage | None = None


def tool_call(name: str, _id: str | None = None, /, **arguments: Any) -> ToolCall:
    """A scripted request to call tool ``name`` with ``arguments`` (a list of them is a parallel turn)."""
    return ToolCall(id=_id or "", name=name, arguments=json.dumps(arguments))


class ScriptedModel:
    """A language model that replays given replies, or answers with a function of the prompt.

    ``ScriptedModel(["yes", "no"])`` answers "yes" then "no" (then fails: a script that runs
    out is a test bug, not a reason to invent text); ``cycle=True`` repeats the script;
    ``ScriptedModel(lambda prompt: ...)`` computes each reply from the user prompt (the
    function may be a coroutine function).

    A reply is text, or what a real model can also answer: ``tool_call("name", **args)`` (a list
    of them asks for several tools at once), a dict or pydantic object (sent back as JSON, the
    shape of structured output), a :class:`Reply` with usage, or an exception to raise (a
    rate limit, an outage). ``usage=(input_tokens, output_tokens)`` reports the same usage for
    every reply that does not script its own. With a streaming agent the text is delivered
    word by word.

    Every call is kept: ``calls`` (the chat messages), ``requests`` (the whole
    :class:`~pyagent.plugin.ModelRequest`: tools and output schema too) and ``prompts`` (the
    user prompt of each call), so tests can assert what was asked.
    """

    def __init__(
        self,
        replies: Iterable[Any] | Callable[[str], Any] | None = None,
        *,
        name: str = "scripted",
        cycle: bool = False,
        usage: tuple[int, int] | Usage | None = None,
    ) -> None:
        self.name = name
        self.calls: list[list[dict[str, Any]]] = []
        self.requests: list[ModelRequest] = []
        self.usage = usage
        self._fn: Callable[[str], Any] | None = None
        self._replies: Any = None
        self._ids = itertools.count(1)
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
        out = []
        for messages in self.calls:
            user = [m for m in messages if m.get("role") == "user"]
            out.append(str((user[-1] if user else messages[-1]).get("content") or ""))
        return out

    async def _next(self, prompt: str) -> Any:
        if self._fn is not None:
            reply = self._fn(prompt)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply
        try:
            return next(self._replies)
        except StopIteration:
            raise RuntimeError(
                f"ScriptedModel {self.name!r} ran out of replies after {len(self.calls) - 1} calls: "
                "give it more replies or cycle=True"
            ) from None

    async def complete(self, messages: list[dict[str, Any]]) -> str:
        """The next reply as text (the protocol of models that only answer with text)."""
        self.calls.append(list(messages))
        user = [m for m in messages if m.get("role") == "user"]
        reply = await self._next(str((user[-1] if user else messages[-1]).get("content") or ""))
        return self._as_response(reply).text or ""

    async def respond(self, request: ModelRequest) -> ModelResponse:
        """The next scripted turn as a model response (text, tool calls, structured JSON, usage)."""
        self.requests.append(request)
        if type(self).complete is not ScriptedModel.complete:
            # A subclass that shapes the text through complete() (written before respond existed) keeps doing so.
            text = await self.complete(request.messages)
            response = ModelResponse(text=text, model=self.name, usage=_usage(self.usage))
        else:
            self.calls.append(list(request.messages))
            response = self._as_response(await self._next(request.prompt))
        if request.on_delta is not None and response.text:
            for piece in re.findall(r"\s*\S+\s*", response.text) or [response.text]:
                request.on_delta(piece)
        return response

    def _as_response(self, reply: Any) -> ModelResponse:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelResponse):
            return reply
        usage = _usage(self.usage)
        if isinstance(reply, Reply):
            calls = [self._numbered(c) for c in reply.tool_calls]
            return ModelResponse(text=reply.text, tool_calls=calls, model=self.name,
                                 usage=_usage(reply.usage) if reply.usage is not None else usage)
        if isinstance(reply, ToolCall):
            return ModelResponse(tool_calls=[self._numbered(reply)], model=self.name, usage=usage)
        if isinstance(reply, list) and reply and all(isinstance(c, ToolCall) for c in reply):
            return ModelResponse(tool_calls=[self._numbered(c) for c in reply], model=self.name, usage=usage)
        if isinstance(reply, (dict, list)):
            return ModelResponse(text=json.dumps(reply), model=self.name, usage=usage)
        dump = getattr(reply, "model_dump_json", None)
        if callable(dump):
            return ModelResponse(text=str(dump()), model=self.name, usage=usage)
        return ModelResponse(text=str(reply), model=self.name, usage=usage)

    def _numbered(self, call: ToolCall) -> ToolCall:
        return call if call.id else ToolCall(id=f"call_{next(self._ids)}", name=call.name, arguments=call.arguments)


def _usage(value: tuple[int, int] | Usage | None) -> Usage | None:
    if value is None or isinstance(value, Usage):
        return value
    return Usage(int(value[0]), int(value[1]))


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
