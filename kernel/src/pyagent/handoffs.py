"""Handoffs: one agent passes the work to another, and the audit trail of every such pass.

``handoff(from_agent=, to_agent=, context=)`` runs ``to_agent`` on the context, with what
``from_agent`` already produced (``from_output=``) in its run context; ``from_agent`` itself is
not run again, because by the time a caller hands off, the first agent has done its part.

Any agent may also pass control on by returning ``handoff.to(other, reason=...)``, or by
calling ``handoff(...)`` itself while it runs. Those agent-requested transfers are what can
loop (A hands to B, B hands back to A), so they are the hops ``max_hops`` counts, along the
whole path of nested calls; planned handoffs (a chain's steps, a route, an explicit
``handoff()`` made by code outside any agent) are not counted, so a chain of any length runs.
Every handoff, planned or requested, is recorded on the result (from, to, reason, time) and
announced to monitors as a ``handoff`` event, inside a workflow run in its audit trail. A
handoff to a remote agent (one with a ``remote_url``, such as an A2A agent) also records where
the work went (``remote=`` that URL).

An agent built with ``can_handoff_to=[...]`` may start handoffs only to those agents: a
transfer it returns, or a ``handoff()`` call naming it as ``from_agent`` (or made while a
handoff call runs it), to anyone else is denied with :class:`CapabilityError`. The denial is
recorded in the same audit trail (``denied=True``, ``denial`` says why) and announced as a
``capability.denied`` event. Planned handoffs (a chain's steps, a route, a supervisor's
delegation) are decided by the code that built the team, which names every member, so grants
do not bound them.

Routing (``handoff.team([...]).route(query)``) and chains (``handoff.chain(...)``) are patterns
built on :class:`HandoffSession`; the pyagent-handoffs plugin provides them, and
``handoff.team``/``handoff.chain`` resolve it through the pattern registry. The router helpers
(:func:`resolve_router`, :func:`score_agents`) stay here because other patterns route too.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from pyagent._sync import run_or_await
from pyagent.engine.teams import TeamResult
from pyagent.errors import CapabilityError, ConfigurationError, HandoffLoopError
from pyagent.model.agents import Agent, as_agent
from pyagent.model.capabilities import check_handoff
from pyagent.model.context import Message, RunContext
from pyagent.model.events import CAPABILITY_DENIED, HANDOFF, Event
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import get_runtime, not_installed

DEFAULT_MAX_HOPS = 10
"""Agent-requested transfers allowed in one call unless ``max_hops=`` or PYAGENT_HANDOFF_MAX_HOPS says otherwise."""

_MISSING: Any = object()


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


class HandoffRecord(BaseModel):
    """One handoff in the audit trail: who passed the work to whom, why, and when."""

    from_agent: str
    to_agent: str
    reason: str = ""
    timestamp: float
    hop: int
    mode: str = "handoff"  # handoff | route | chain | transfer
    denied: bool = False
    denial: str | None = None  # why it was denied (the CapabilityError's message)
    remote: str | None = None  # where to_agent runs when it is a remote agent (its URL)


class HandoffResult(TeamResult):
    """What ``handoff(...)`` returns: ``.agent`` answered, ``.handoffs`` is the audit trail."""

    pattern: str = "handoff"
    agent: str | None = None
    handoffs: list[HandoffRecord] = Field(default_factory=list)

    @property
    def handoff(self) -> HandoffRecord | None:
        """The first handoff of the call (the explicit one, for ``handoff(...)``)."""
        return self.handoffs[0] if self.handoffs else None

    @property
    def transfers(self) -> int:
        """How many handoffs the agents requested themselves (the hops ``max_hops`` bounds)."""
        return sum(1 for r in self.handoffs if r.mode == "transfer" and not r.denied)


R = TypeVar("R", bound=HandoffResult)


# ---------------------------------------------------------------------------------------------
# agent-requested transfers
# ---------------------------------------------------------------------------------------------


class Transfer:
    """An agent's request to pass control on; build one with ``handoff.to(agent, reason=...)``."""

    __slots__ = ("input", "reason", "target")
    __pyagent_control__ = True  # steers the handoff call; output guardrails leave it alone

    def __init__(self, target: Any, *, reason: str = "", input: Any = _MISSING) -> None:
        if target is None:
            raise ConfigurationError("handoff.to(...) needs the agent (or its name) to hand off to")
        self.target = target
        self.reason = reason
        self.input = input

    def __repr__(self) -> str:
        name = self.target if isinstance(self.target, str) else getattr(self.target, "name", self.target)
        return f"Transfer(to={name!r}, reason={self.reason!r})"


def max_hops_setting(value: int | None) -> int:
    if value is None:
        env = os.environ.get("PYAGENT_HANDOFF_MAX_HOPS")
        if not env:
            return DEFAULT_MAX_HOPS
        try:
            value = int(env)
        except ValueError:
            raise ConfigurationError(
                f"PYAGENT_HANDOFF_MAX_HOPS={env!r} is not a whole number: set it to e.g. 10"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_hops must be a whole number >= 0, got {value!r}")
    return value


class HandoffSession:
    """One handoff call: its run id, audit trail, shared state and transcript, and the hop count.

    A handoff call made by an agent while another call runs it is nested: it continues that
    call's path, so its hops start where the enclosing call's stood (``base``) and the
    enclosing limit applies. Agents calling ``handoff()`` on each other thus end at the hop
    limit like agents returning ``handoff.to(...)``.
    """

    def __init__(self, *, name: str, max_hops: int, known: Iterable[Agent]) -> None:
        from pyagent.model.context import current_run

        self.runtime = get_runtime()
        self.name = name
        # Inside a workflow run, a handoff belongs to that run: same id, same audit trail.
        run = current_run()
        self.run_id = run.run_id if run is not None else uuid.uuid4().hex
        self.max_hops = max_hops
        self.known: dict[str, Agent] = {}
        for a in known:
            self.known.setdefault(a.name, a)
        self.records: list[HandoffRecord] = []
        self.transcript: list[Message] = []
        self.state: dict[str, Any] = {}
        self.transfers: int = 0
        self.started_at = self.runtime.clock.time()
        self.base = 0
        self.path: list[str] = []
        enclosing = _RUNNING.get()
        if enclosing is not None:
            parent, caller = enclosing
            self.base = parent.base + parent.transfers + 1
            self.path = [*parent.path, caller]
            self.max_hops = min(max_hops, parent.max_hops)

    def record(self, from_agent: str, to_agent: str, reason: str, mode: str,
               denial: CapabilityError | None = None) -> HandoffRecord:
        """Add a handoff to the audit trail and announce it; with ``denial``, as a denied one."""
        remote = remote_location(self.known.get(to_agent))
        rec = HandoffRecord(from_agent=from_agent, to_agent=to_agent, reason=reason,
                            timestamp=self.runtime.clock.time(), hop=len(self.records) + 1, mode=mode,
                            denied=denial is not None, denial=None if denial is None else str(denial),
                            remote=remote)
        self.records.append(rec)
        extra: dict[str, Any] = {} if denial is None else {"denied": True, "denial": rec.denial}
        if remote is not None:
            extra["remote"] = remote
        announce_handoff(from_agent, to_agent, reason, mode=mode, source=self.name, run_id=self.run_id,
                         timestamp=rec.timestamp, hop=rec.hop, **extra)
        return rec

    def deny(self, agent: Agent, target: str, reason: str, mode: str) -> HandoffFailure | None:
        """Check ``agent``'s grant for a handoff to ``target``; a denial is recorded and returned."""
        try:
            check_handoff(agent, target, mode=mode)
        except CapabilityError as exc:
            self.record(agent.name, target, reason, mode, denial=exc)
            return HandoffFailure(agent, exc)
        return None

    def resolve(self, target: Any, source: Agent) -> Agent:
        if isinstance(target, str):
            found = self.known.get(target)
            if found is None:
                raise ConfigurationError(
                    f"agent '{source.name}' handed off to '{target}', which is not known here "
                    f"(known agents: {', '.join(self.known) or 'none'}): return "
                    "handoff.to(<agent object>) or add the agent to the team"
                )
            return found
        agent = as_agent(target, what=f"handoff target of agent '{source.name}'")
        self.known.setdefault(agent.name, agent)
        return agent

    def _nested_loop_error(self, target: Agent) -> HandoffLoopError:
        shown = " → ".join([*self.path[-self.max_hops - 1:], target.name])
        return HandoffLoopError(
            f"handoff loop: agent '{self.path[-1]}' started a handoff to '{target.name}' "
            f"{self.base} hops deep but max_hops={self.max_hops} (recent path: {shown}); make an "
            "agent answer instead of handing off, or raise max_hops if the path is legitimate"
        )

    def _loop_error(self, source: Agent, target: Agent) -> HandoffLoopError:
        path = [r.from_agent for r in self.records if r.mode == "transfer"][-self.max_hops:]
        shown = " → ".join([*path, source.name, target.name])
        return HandoffLoopError(
            f"handoff loop: agent '{source.name}' asked for hop {self.transfers} to '{target.name}' "
            f"but max_hops={self.max_hops} (recent path: {shown}); make an agent answer instead of "
            "handing off, or raise max_hops if the path is legitimate"
        )

    async def run(self, agent: Agent, input: Any, *, result: Any = None,
                  via: HandoffRecord | None = None, results: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> tuple[Agent, Any]:
        """Run ``agent`` and follow the transfers it (and its successors) request, within the hop limit."""
        current, value = agent, input
        if self.base > self.max_hops:
            raise HandoffFailure(agent, self._nested_loop_error(agent))
        while True:
            ctx = RunContext(run_id=self.run_id, state=self.state, transcript=self.transcript,
                             result=result, results=dict(results) if results else None,
                             extra={**(extra or {}), "handoff": via, "handoffs": self.records})
            token = _RUNNING.set((self, current.name))
            try:
                out = await current.run(value, ctx)
            except Exception as exc:
                raise HandoffFailure(current, exc) from exc
            finally:
                _RUNNING.reset(token)
            if not isinstance(out, Transfer):
                return current, out
            self.transfers += 1
            # A name is checked against the grant before it is looked up: a denial is the answer
            # whether or not an agent of that name is known here.
            named = out.target if isinstance(out.target, str) else None
            if named is not None and (denied := self.deny(current, named, out.reason, "transfer")):
                raise denied
            try:
                target = self.resolve(out.target, current)
            except ConfigurationError as exc:
                raise HandoffFailure(current, exc) from exc
            if named is None and (denied := self.deny(current, target.name, out.reason, "transfer")):
                raise denied
            if self.base + self.transfers > self.max_hops:
                raise HandoffFailure(current, self._loop_error(current, target))
            via = self.record(current.name, target.name, out.reason, "transfer")
            note = out.reason or f"handed off to {target.name}"
            self.transcript.append(Message(current.name, note, round=via.hop, role="handoff"))
            if out.input is not _MISSING:
                value = out.input
            current = target

    def finish(self, result: R, agent: Agent | None, output: Any,
               failure: HandoffFailure | None = None) -> R:
        result.run_id = self.run_id
        result.handoffs = self.records
        result.transcript = self.transcript
        result.started_at = self.started_at
        result.finished_at = self.runtime.clock.time()
        if failure is None:
            result.agent = agent.name if agent is not None else None
            result.output = output
            return result
        result.agent = failure.agent.name
        result.status = TaskStatus.FAILED
        result.exception = failure.error
        cause = failure.error
        if isinstance(cause, (HandoffLoopError, CapabilityError)):
            result.error = str(cause)
        else:
            result.error = f"agent '{failure.agent.name}' failed: {type(cause).__name__}: {cause}"
        return result


_RUNNING: ContextVar[tuple[HandoffSession, str] | None] = ContextVar("pyagent_handoff_running", default=None)
"""The handoff call and the agent it is running, so a handoff that agent starts is nested in it."""


def running_agent() -> Agent | None:
    """The agent a handoff call is running right now (the caller of a nested handoff), if any."""
    enclosing = _RUNNING.get()
    if enclosing is None:
        return None
    session, name = enclosing
    return session.known.get(name)


def remote_location(agent: Any) -> str | None:
    """Where ``agent`` runs when it is a remote agent (its ``remote_url``), else None.

    A remote agent (an A2A agent in another process) says so with a ``remote_url`` attribute;
    handoffs to it are audited with that URL, so the trail shows the work left the process.
    """
    url = getattr(agent, "remote_url", None)
    return url if isinstance(url, str) and url else None


class HandoffFailure(Exception):
    """Raised by :meth:`HandoffSession.run` when an agent fails: which agent, and its error."""

    def __init__(self, agent: Agent, error: BaseException) -> None:
        super().__init__(str(error))
        self.agent = agent
        self.error = error


def _bounded_callers(origin: Agent | None) -> list[Agent]:
    """Whose grants bound an explicit handoff: ``from_agent``, and the agent whose run makes the call."""
    out = [] if origin is None else [origin]
    caller = running_agent()
    if caller is not None and caller is not origin:
        out.append(caller)
    return out


def announce_handoff(from_agent: str, to_agent: str, reason: str, *, mode: str, source: str,
                     run_id: str, timestamp: float | None = None, **data: Any) -> None:
    """Make a handoff visible: a ``handoff`` event to every monitor, and the audit trail of the run.

    Inside a workflow run (a handoff made by one of its agents) the run records it in its
    history and delivers the event to its listeners; outside any run the event is broadcast.
    Patterns that pass work between agents (a supervisor delegating) announce it here too.
    """
    from pyagent.model.context import current_run

    run = current_run()
    if run is not None:
        run.record_handoff(from_agent, to_agent, reason, mode=mode, source=source, **data)
        return
    when = get_runtime().clock.time() if timestamp is None else timestamp
    payload = {"from_agent": from_agent, "to_agent": to_agent, "reason": reason, "timestamp": when,
               "mode": mode, **data}
    if data.get("denied"):  # a handoff refused by the agent's can_handoff_to (see record_handoff)
        get_runtime().broadcast(Event(
            CAPABILITY_DENIED, workflow=source, run_id=run_id, task=to_agent, timestamp=when,
            data={"capability": "handoff", "agent": from_agent, "target": to_agent, **payload}))
        return
    get_runtime().broadcast(Event(HANDOFF, workflow=source, run_id=run_id, task=to_agent,
                                  timestamp=when, data=payload))


# ---------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------


def resolve_router(spec: Any = None) -> tuple[str, Any]:
    """``(name, router)`` for ``router=``: None (the default router), a registered name, or a router object."""
    if spec is None:
        rt = get_runtime()
        name = rt.default_router_name()
        if name is None:
            raise not_installed("router", "keyword", [])
        return name, rt.lookup("router", name)
    if isinstance(spec, str):
        return spec, get_runtime().lookup("router", spec)
    if callable(getattr(spec, "score", None)):
        return str(getattr(spec, "name", type(spec).__name__)), spec
    raise ConfigurationError(
        f"router= must be a router name or an object with score(query, agents), got {spec!r}"
    )


async def score_agents(router: Any, router_name: str, query: Any, agents: Sequence[Agent]) -> list[tuple[str, float]]:
    """Ask ``router`` to score ``agents`` for ``query``; return every agent's score, best first.

    Routers may be sync or async (an embedding or LLM router awaits its model). Agents the
    router leaves out score 0; equal scores keep the team's order.
    """
    raw = router.score(query, list(agents))
    if inspect.isawaitable(raw):
        raw = await raw
    order = {a.name: i for i, a in enumerate(agents)}
    scores = dict.fromkeys(order, 0.0)
    try:
        pairs = [(str(n), float(s)) for n, s in raw]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"router '{router_name}' returned {raw!r}: score() must return a list of (agent name, score) pairs"
        ) from None
    for name, score in pairs:
        if name not in scores:
            raise ConfigurationError(
                f"router '{router_name}' scored an agent named {name!r} that is not in the team "
                f"({', '.join(order)})"
            )
        scores[name] = score
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# ---------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------


class Handoff:
    """``handoff(from_agent=, to_agent=, context=)``, plus ``handoff.team``, ``handoff.chain`` and ``handoff.to``.

    The one-call forms return the result from synchronous code and an awaitable inside a
    running event loop; a failed agent gives a failed result (``.status``, ``.error``), not an
    exception, while bad arguments raise at once.
    """

    def __call__(
        self,
        from_agent: Any = None,
        to_agent: Any = None,
        context: Any = None,
        *,
        from_output: Any = _MISSING,
        reason: str | None = None,
        max_hops: int | None = None,
    ) -> Any:
        """Run ``to_agent`` on ``context``; what ``from_agent`` produced (``from_output=``) goes with it.

        ``to_agent`` gets ``context`` as its input; ``from_output`` is ``ctx.result`` and, as a
        transcript message from ``from_agent``, part of an LLM agent's prompt. ``from_agent`` may
        be an agent or just its name. The reason recorded defaults to the context when it is text.
        """
        if to_agent is None:
            raise ConfigurationError("handoff(...) needs to_agent=: the agent that takes over")
        if from_agent is None:
            raise ConfigurationError("handoff(...) needs from_agent=: the agent handing the work over")
        origin = None if isinstance(from_agent, str) else as_agent(from_agent, what="from_agent")
        source = origin.name if origin is not None else str(from_agent)
        target = as_agent(to_agent, what="to_agent")
        hops = max_hops_setting(max_hops)
        why = reason if reason is not None else (context if isinstance(context, str) else "")
        known = [target] if origin is None else [origin, target]

        async def go() -> HandoffResult:
            session = HandoffSession(name="handoff", max_hops=hops, known=known)
            result = HandoffResult()
            previous = None
            for bounded in _bounded_callers(origin):
                denied = session.deny(bounded, target.name, why, "handoff")
                if denied is not None:
                    return session.finish(result, None, None, denied)
            if from_output is not _MISSING:
                previous = from_output
                session.transcript.append(Message(source, from_output, role="handoff"))
            via = session.record(source, target.name, why, "handoff")
            try:
                answered, output = await session.run(target, context, result=previous, via=via)
            except HandoffFailure as failed:
                return session.finish(result, None, None, failed)
            return session.finish(result, answered, output)

        return run_or_await(go)

    @staticmethod
    def to(agent: Any, *, reason: str = "", input: Any = _MISSING) -> Transfer:
        """Return this from an agent to pass control to ``agent`` (an agent or a team member's name).

        The next agent gets the same input unless ``input=`` replaces it; ``reason`` is recorded.
        """
        return Transfer(agent, reason=reason, input=input)

    @staticmethod
    def team(agents: Iterable[Any], **options: Any) -> Any:
        """A team whose ``route(query)`` lets the router pick the agent that answers.

        Options: ``router`` (a router name or object; default the installed default router),
        ``name``, ``min_confidence`` (below it the ``fallback`` agent answers), ``fallback``,
        ``max_hops``. Provided by the pyagent-handoffs plugin.
        """
        from pyagent.patterns import build_team

        return build_team("handoff_team", agents=agents, **options)

    @staticmethod
    def chain(agents: Iterable[Any] | None = None, task: Any = None, pass_output: bool = True,
              **options: Any) -> Any:
        """Hand the work along ``agents`` in order: the result from sync code, an awaitable in a loop.

        With ``pass_output=True`` each agent's input is the previous agent's output (the first
        gets ``task``); with ``False`` every agent gets ``task``. The result's ``.output`` is the
        last agent's output and ``.steps`` holds every turn. Options: ``name``, ``max_hops``.
        Provided by the pyagent-handoffs plugin.
        """
        from pyagent.patterns import build_team

        chain = build_team("handoff_chain", agents=agents, pass_output=pass_output, **options)
        return run_or_await(lambda: chain.run(task))

    def __repr__(self) -> str:
        return "pyagent.handoff"


handoff = Handoff()
"""The handoff entry point: call it, or use ``handoff.team``, ``handoff.chain``, ``handoff.to``."""


# Names that moved to the pyagent-handoffs plugin, still importable from here for a while.
_MOVED = {"HandoffTeam", "RouteResult", "RouteScores", "ChainResult", "ChainStep",
          "DEFAULT_MIN_CONFIDENCE"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'pyagent.handoffs' has no attribute {name!r}")
    import importlib
    import warnings

    warnings.warn(f"pyagent.handoffs.{name} moved to the pyagent-handoffs plugin: import it from "
                  "pyagent_handoffs", DeprecationWarning, stacklevel=2)
    try:
        module = importlib.import_module("pyagent_handoffs")
    except ImportError:
        raise not_installed("pattern", "handoff_team", []) from None
    return getattr(module, name)
