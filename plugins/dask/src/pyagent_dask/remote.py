"""What runs on a Dask worker: one agent call, with a snapshot of its run context.

The run context cannot travel as it is: it holds the live workflow run. The caller sends a
copy of what an agent may read (task, results so far, state, transcript, run id, attempt,
phase, round) and a :class:`RemoteRun` stands in for the run on the worker: it records what
the agent reports to its run (guardrail audits, model usage and tool calls, handoffs, events)
so the caller can replay it on the real run. What the agent writes to ``ctx.state`` and appends
to ``ctx.transcript`` comes back as well (see :func:`state_delta`).

Every function here is called by Dask on a worker, which imports this module: workers need
pyagent-dask installed, like the kernel and the agents' own dependencies.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import traceback
from typing import Any

import cloudpickle

from pyagent.plugin import FunctionAgent, RunContext, run_scope
from pyagent_dask.errors import PayloadError


class Ref:
    """Stands for a value that travels as a separate Dask argument (a large, scattered value)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __getstate__(self) -> int:
        return self.index

    def __setstate__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"Ref({self.index})"


class WorkflowInfo:
    """What ``ctx.workflow`` is on a worker: the workflow's name, description and metadata.

    The workflow itself (every task and agent) is not sent with each call.
    """

    __slots__ = ("description", "metadata", "name")

    def __init__(self, name: str, description: str = "", metadata: dict[str, Any] | None = None) -> None:
        self.name = name
        self.description = description
        self.metadata = metadata or {}

    def __getstate__(self) -> tuple[str, str, dict[str, Any]]:
        return (self.name, self.description, self.metadata)

    def __setstate__(self, state: tuple[str, str, dict[str, Any]]) -> None:
        self.name, self.description, self.metadata = state

    def __repr__(self) -> str:
        return f"WorkflowInfo(name={self.name!r})"


class RemoteRun:
    """Stands in for the workflow run on a worker, recording what is reported to it.

    Each call is kept as ``(method, args, kwargs)`` in :attr:`journal`; the caller replays it
    on the real run, so audits, usage, tool calls, handoffs and events of an agent that ran on
    a worker land in its run's history and reach its monitors, after the call returns.
    """

    listening = True  # a sub-workflow run on the worker forwards its events here
    event_kinds = None

    def __init__(self, run_id: str, workflow: Any, task: str | None, ctx: RunContext) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.current_task = task
        self.results = ctx.results
        self.state = ctx.state
        self.transcript = ctx.transcript
        self.journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _note(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.journal.append((method, args, kwargs))

    def audit(self, kind: str, task: str | None = None, **data: Any) -> dict[str, Any]:
        self._note("audit", kind, task, **data)
        return {"kind": kind, "task": task, **data}

    def emit(self, kind: str, task: str | None = None, status: str | None = None, **data: Any) -> None:
        self._note("emit", kind, task, status, **data)

    def deliver(self, event: Any) -> None:
        self._note("deliver", event)

    def forward(self, event: Any) -> None:
        self._note("forward", event)

    def record_usage(self, task: str | None, usage: Any) -> None:
        self._note("record_usage", task, usage)

    def record_tool_call(self, task: str | None, entry: dict[str, Any]) -> None:
        self._note("record_tool_call", task, entry)

    def record_handoff(self, from_agent: Any, to_agent: Any, reason: str | None = None, **data: Any) -> None:
        self._note("record_handoff", getattr(from_agent, "name", from_agent),
                   getattr(to_agent, "name", to_agent), reason, **data)

    def __repr__(self) -> str:
        return f"RemoteRun(run_id={self.run_id!r}, task={self.current_task!r})"


# The methods of a run that a journal may call; replaying anything else is refused.
REPLAYABLE = frozenset({"audit", "emit", "deliver", "forward", "record_usage", "record_tool_call",
                        "record_handoff"})


class Call:
    """One agent call as the caller sends it: the input, the context snapshot and the state.

    The agent and the task travel beside it, pickled once per run by the caller; the state is
    pickled on its own, so the worker can tell what the agent changed in it.
    """

    __slots__ = ("ctx", "input", "state", "transcript_length")

    def __init__(self, input: Any, ctx: RunContext, state: bytes | None) -> None:
        self.input = input
        self.ctx = ctx
        self.state = state
        self.transcript_length = len(ctx.transcript)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.input, self.ctx, self.state, self.transcript_length)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.input, self.ctx, self.state, self.transcript_length = state


class Outcome:
    """What comes back from a worker: the output or the error, and what the agent reported."""

    __slots__ = ("error", "journal", "ok", "state_deleted", "state_set", "traceback", "transcript_added",
                 "value", "worker")

    def __init__(self) -> None:
        self.ok = True
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self.journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.state_set: dict[str, Any] | None = None
        self.state_deleted: list[str] | None = None
        self.transcript_added: list[Any] | None = None
        self.worker = ""

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in Outcome.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(Outcome.__slots__, state, strict=True):
            setattr(self, name, value)


def dumps(value: Any) -> bytes:
    """Pickle with the standard pickler, which is fast, and cloudpickle where it is needed.

    As Dask does: cloudpickle when the standard pickler fails (a lambda, a local function) or
    refers to ``__main__`` (another module on a worker) or to a module registered with
    ``cloudpickle.register_pickle_by_value``.
    """
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if b"__main__" in data or any(name.encode() in data for name in cloudpickle.list_registry_pickle_by_value()):
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def _resolve(value: Any, values: tuple[Any, ...]) -> Any:
    return values[value.index] if type(value) is Ref else value


class _Prepared:
    """A call unpacked on the worker: placeholders replaced by the values Dask handed over."""

    def __init__(self, agent_blob: bytes, task_blob: bytes | None, blob: bytes, values: tuple[Any, ...]) -> None:
        try:
            call: Call = cloudpickle.loads(blob)
            agent = cloudpickle.loads(agent_blob)
            if task_blob is not None:
                task = cloudpickle.loads(task_blob)
                task.__dict__["agent"] = agent  # the agent being called (the fallback, in a fallback call)
                call.ctx.task = task
        except Exception as exc:
            raise PayloadError(
                f"the call could not be unpickled on Dask worker {_worker_address() or '?'}: "
                f"{type(exc).__name__}: {exc}. Workers need the modules the agent is defined in and "
                "uses (install them there, as pyagent-kernel and pyagent-dask are), or send a module "
                "by value with cloudpickle.register_pickle_by_value(module)"
            ) from exc
        ctx = call.ctx
        self.agent = agent
        self.input = _resolve(call.input, values)
        self.values = values
        ctx.result = _resolve(ctx.result, values)
        if any(type(v) is Ref for v in ctx.results.values()):
            ctx.results = {k: _resolve(v, values) for k, v in ctx.results.items()}
        self.state_blob = call.state
        self.state_refs: dict[str, Any] = {}
        if call.state is not None:
            raw: dict[str, Any] = cloudpickle.loads(call.state)
            for key, value in raw.items():
                if type(value) is Ref:
                    self.state_refs[key] = (value, values[value.index])
                    raw[key] = values[value.index]
            ctx.state = raw
        self.transcript_length = call.transcript_length
        task = ctx.task.name if ctx.task is not None else None
        self.run = RemoteRun(ctx.run_id, ctx.workflow, task, ctx)
        ctx.run = self.run
        self.ctx = ctx
        self.task = task

    def finish(self, outcome: Outcome) -> Outcome:
        outcome.journal = self.run.journal
        outcome.worker = _worker_address()
        ctx = self.ctx
        if len(ctx.transcript) > self.transcript_length:
            outcome.transcript_added = list(ctx.transcript[self.transcript_length:])
        if self.state_blob is not None or ctx.state:
            outcome.state_set, outcome.state_deleted = state_delta(ctx.state, self.state_blob, self.state_refs)
        return outcome

    def succeeded(self, value: Any) -> Outcome:
        outcome = Outcome()
        outcome.value = value
        return self.finish(outcome)

    def failed(self, exc: Exception) -> Outcome:
        outcome = Outcome()
        outcome.ok = False
        outcome.traceback = "".join(traceback.format_exception(exc))
        try:
            cloudpickle.dumps(exc)
            outcome.error = exc
        except Exception as why:
            outcome.error = RuntimeError(f"{type(exc).__qualname__}: {exc} (the error itself cannot be pickled: {why})")
        return self.finish(outcome)


def state_delta(state: dict[str, Any], blob: bytes | None,
                refs: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str] | None]:
    """The keys of ``ctx.state`` the agent set or changed, and those it deleted.

    ``blob`` is the state as sent; unchanged values (equal, or pickling to the same bytes)
    are left out, so a value another task changed meanwhile is not overwritten with the old
    one. ``refs``: keys sent as scattered values, with the placeholder and the value.
    """
    # Put the placeholders back where the agent left a scattered value as it was.
    sent = {k: (refs[k][0] if k in refs and v is refs[k][1] else v) for k, v in state.items()}
    if blob is not None and dumps(sent) == blob:
        return None, None
    before: dict[str, Any] = cloudpickle.loads(blob) if blob is not None else {}
    changed = {k: state[k] for k, v in sent.items() if k not in before or _changed(before[k], v)}
    deleted = [k for k in before if k not in state]
    return (changed or None), (deleted or None)


def _changed(before: Any, after: Any) -> bool:
    if type(before) is Ref or type(after) is Ref:
        return not (type(before) is Ref and type(after) is Ref and before.index == after.index)
    try:
        if (before == after) is True:
            return False
    except Exception:
        pass
    try:
        return bool(cloudpickle.dumps(before) != cloudpickle.dumps(after))
    except Exception:
        return True


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:
        return ""


async def run_async(key: str, agent: bytes, task: bytes | None, blob: bytes, *values: Any) -> Outcome:
    """Run an async agent on the worker's event loop; cancelled when its Dask future is.

    Dask does not interrupt a task that is running when its future is cancelled, so a
    watcher checks the task's state on this worker and cancels the agent's coroutine (a
    model call, a sleep) once the scheduler has let the key go.
    """
    call = _Prepared(agent, task, blob, values)
    with run_scope(call.run, call.task):
        running = asyncio.ensure_future(call.agent.run(call.input, call.ctx))
        watcher = asyncio.ensure_future(_cancel_when_released(key, running))
        try:
            output = await running
        except Exception as exc:
            return call.failed(exc)
        finally:
            watcher.cancel()
    return call.succeeded(output)


# How often a running async agent checks whether its Dask future was cancelled (seconds).
WATCH_INTERVAL = 0.2


async def _cancel_when_released(key: str, running: asyncio.Future[Any]) -> None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except Exception:  # not on a worker (called directly): nothing to watch
        return
    while not running.done():
        await asyncio.sleep(WATCH_INTERVAL)
        state = worker.state.tasks.get(key)
        if state is None or state.state in ("cancelled", "released", "forgotten"):
            running.cancel()
            return


def run_threaded(key: str, agent_blob: bytes, task: bytes | None, blob: bytes, *values: Any) -> Outcome:
    """Run a sync function agent in one of the worker's threads, off its event loop.

    A plain function is called directly; one with guardrails (which are async) runs its
    ``run()`` on an event loop of its own in this thread. Python cannot stop a thread: if the
    Dask future is cancelled meanwhile, the function runs to its end and its result is dropped.
    """
    call = _Prepared(agent_blob, task, blob, values)
    agent = call.agent
    with run_scope(call.run, call.task):
        try:
            if type(agent) is FunctionAgent and not (agent.input_guardrails or agent.output_guardrails):
                output = agent(call.input, call.ctx)
                if inspect.isawaitable(output):
                    output = asyncio.run(_awaited(output))
            else:
                output = asyncio.run(agent.run(call.input, call.ctx))
        except Exception as exc:
            return call.failed(exc)
    return call.succeeded(output)


async def _awaited(value: Any) -> Any:
    return await value


def runs_in_thread(agent: Any) -> bool:
    """Sync function agents run in a worker thread; everything else on the worker's loop."""
    return type(agent) is FunctionAgent and not agent.is_async
