"""Events to spans, following the OpenTelemetry GenAI semantic conventions for agents.

- ``invoke_workflow {workflow}``: one per run; circuit breaker changes are its span events.
- ``invoke_agent {agent}``: one per task attempt, a child of its run's span. While the agent
  runs, its span is the current span, so the agent's own instrumented calls nest under it.
  Retries and fallbacks end an attempt (as span events) and start the next.
- ``execute_tool {tool}``: from ``tool.started`` to ``tool.called``/``tool.failed``, paired by
  call id, a child of the calling agent's span.
- Team patterns: ``invoke_workflow {team}`` with a ``round {n}`` span per round and an
  ``invoke_agent {agent}`` span per turn or subtask. Team events only say when a turn ended,
  so turn spans are made when their round (or the team) ends, with starts taken from what
  the events tell: consensus agents answer concurrently from the round's start; a
  supervisor's subtask starts when it is delegated; other turns follow one another.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pyagent.plugin import Event, events

_ERROR_TYPE = re.compile(r"\b([A-Za-z_][\w.]*)\s*:")
_CONCURRENT_TURNS = {"consensus"}
_MAX_EARLY = 1000


def error_type(error: Any) -> str:
    """The exception class named in an event's error text ("task 'x' failed: ValueError: ...")."""
    text = str(error or "")
    for match in _ERROR_TYPE.finditer(text):
        name = match.group(1)
        if name != "task" and name[:1].isupper():
            return name.rsplit(".", 1)[-1]
    return "error"


class _Attempt:
    __slots__ = ("agent", "ctx", "number", "span", "token")

    def __init__(self, span: Any, ctx: Any, token: Any, number: int, agent: str) -> None:
        self.span, self.ctx, self.token, self.number, self.agent = span, ctx, token, number, agent


class _Run:
    __slots__ = ("ctx", "span", "token", "workflow")

    def __init__(self, span: Any, ctx: Any, token: Any, workflow: str) -> None:
        self.span, self.ctx, self.token, self.workflow = span, ctx, token, workflow


class _Team:
    def __init__(self, span: Any, token: Any, pattern: str, start: int, owner: Any = None) -> None:
        self.span, self.token, self.pattern = span, token, pattern
        self.owner = owner  # the span that was current when it started (its task attempt's)
        self.round_start = start
        self.cursor = start
        self.turns: list[tuple[Event, int, int]] = []  # event, start, end (ns)
        self.delegated: dict[str, int] = {}


class SpanBuilder:
    """Turns events into spans with one tracer; ``handlers`` maps event kinds to its methods."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self._attach, self._detach, self._now = context.attach, context.detach, context.get_current
        self._in_context = trace.set_span_in_context
        self._current = trace.get_current_span
        self._internal = SpanKind.INTERNAL
        self._error = lambda text: Status(StatusCode.ERROR, str(text)[:500])
        self.runs: dict[str, _Run] = {}
        self.attempts: dict[tuple[str, str | None], _Attempt] = {}
        self.tools: dict[tuple[str, Any], Any] = {}
        self.teams: dict[Any, _Team] = {}
        self._early: dict[str, list[tuple[str, dict[str, Any], int]]] = {}
        self.handlers = {
            events.WORKFLOW_STARTED: self.workflow_started,
            events.WORKFLOW_COMPLETED: self.workflow_ended,
            events.WORKFLOW_FAILED: self.workflow_ended,
            events.WORKFLOW_CANCELLED: self.workflow_ended,
            events.WORKFLOW_SUSPENDED: self.workflow_suspended,
            events.TASK_WAITING: self.task_waiting,
            events.TASK_STARTED: self.task_started,
            events.TASK_COMPLETED: self.task_ended,
            events.TASK_FAILED: self.task_ended,
            events.TASK_CANCELLED: self.task_ended,
            events.TASK_RETRYING: self.task_retrying,
            events.TASK_FALLBACK: self.task_fallback,
            events.TASK_SKIPPED: self.task_noted,
            events.TASK_REUSED: self.task_noted,
            events.HANDOFF: self.handoff,
            events.CIRCUIT_CHANGED: self.circuit,
            events.MODEL_USAGE: self.usage,
            events.TOOL_STARTED: self.tool_started,
            events.TOOL_CALLED: self.tool_ended,
            events.TOOL_FAILED: self.tool_ended,
            events.TEAM_STARTED: self.team_started,
            events.TEAM_TURN: self.team_turn,
            events.TEAM_ROUND: self.team_round,
            events.TEAM_COMPLETED: self.team_ended,
            events.TEAM_FAILED: self.team_ended,
        }

    # -- runs ------------------------------------------------------------------------------

    def _open_run(self, e: Event) -> _Run:
        span = self.tracer.start_span(
            f"invoke_workflow {e.workflow}", kind=self._internal,
            attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": e.workflow,
                        "pyagent.run_id": e.run_id})
        for name, attributes, when in self._early.pop(e.run_id, ()):
            span.add_event(name, attributes, timestamp=when)
        return _Run(span, self._in_context(span), None, e.workflow)

    def workflow_started(self, e: Event) -> None:
        run = self._open_run(e)
        run.token = self._attach(run.ctx)
        self.runs[e.run_id] = run

    def workflow_ended(self, e: Event) -> None:
        run = self.runs.pop(e.run_id, None)
        if run is None:  # refused by an open circuit breaker: it never started
            run = self._open_run(e)
        span = run.span
        self._end_teams_of(span)
        if e.kind != events.WORKFLOW_COMPLETED:
            error = e.data.get("error") or e.status or "cancelled"
            span.set_attribute("error.type", error_type(error) if e.kind == events.WORKFLOW_FAILED else "cancelled")
            span.set_status(self._error(error))
        if run.token is not None and self._current() is span:
            self._detach(run.token)
        span.end()

    def workflow_suspended(self, e: Event) -> None:
        """This execution ends while the run waits for people: its span ends, neither ok nor an
        error; the run's next execution (once answered) has a span of its own."""
        run = self.runs.pop(e.run_id, None)
        if run is None:
            return
        span = run.span
        span.set_attribute("pyagent.run.status", "waiting")
        span.add_event("pyagent.waiting", {"pyagent.interrupts": [
            str(i.get("interrupt")) for i in e.data.get("interrupts") or ()]})
        if run.token is not None and self._current() is span:
            self._detach(run.token)
        span.end()

    # -- task attempts ---------------------------------------------------------------------

    def _start_attempt(self, e: Event, agent: str, number: int, extra: dict[str, Any] | None = None) -> None:
        run = self.runs.get(e.run_id)
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                      "gen_ai.workflow.name": e.workflow, "pyagent.run_id": e.run_id,
                      "pyagent.task": e.task or "", "pyagent.attempt": number}
        if extra:
            attributes.update(extra)
        span = self.tracer.start_span(f"invoke_agent {agent}", None if run is None else run.ctx,
                                      self._internal, attributes)
        ctx = self._in_context(span)
        self.attempts[(e.run_id, e.task)] = _Attempt(span, ctx, self._attach(ctx), number, agent)

    def _end_attempt(self, key: tuple[str, str | None], error: Any = None,
                     kind: str | None = None) -> _Attempt | None:
        attempt = self.attempts.pop(key, None)
        if attempt is None:
            return None
        span = attempt.span
        self._end_teams_of(span)
        if error is not None:
            span.set_attribute("error.type", kind or error_type(error))
            span.set_status(self._error(error))
        if self._now() is attempt.ctx:  # still the current context here: undo our attach
            self._detach(attempt.token)
        span.end()
        return attempt

    def task_started(self, e: Event) -> None:
        self._start_attempt(e, str(e.data.get("agent") or e.task), 1)

    def task_ended(self, e: Event) -> None:
        if e.kind == events.TASK_COMPLETED:
            self._end_attempt((e.run_id, e.task))
        elif e.kind == events.TASK_CANCELLED:
            self._end_attempt((e.run_id, e.task), "cancelled", "cancelled")
        else:
            self._end_attempt((e.run_id, e.task), e.data.get("error") or "failed")

    def task_waiting(self, e: Event) -> None:
        """The attempt paused at a question: its span ends (not an error); the task runs again,
        from its start, in a new attempt span once answered."""
        attempt = self.attempts.get((e.run_id, e.task))
        if attempt is not None:
            attempt.span.set_attribute("pyagent.task.status", "waiting")
            attempt.span.add_event("pyagent.interrupt", {"pyagent.interrupt.id": str(e.data.get("interrupt")),
                                                         "pyagent.interrupt.question": str(e.data.get("question"))})
        self._end_attempt((e.run_id, e.task))

    def task_retrying(self, e: Event) -> None:
        key = (e.run_id, e.task)
        attempt = self.attempts.get(key)
        if attempt is None:
            return
        attempt.span.add_event("pyagent.retry", {"pyagent.attempt": attempt.number,
                                                 "pyagent.retry.delay": float(e.data.get("delay") or 0.0),
                                                 "error.type": error_type(e.data.get("error"))})
        self._end_attempt(key, e.data.get("error"))
        self._start_attempt(e, attempt.agent, attempt.number + 1)

    def task_fallback(self, e: Event) -> None:
        key = (e.run_id, e.task)
        attempt = self.attempts.get(key)
        number = 1 if attempt is None else attempt.number
        fallback = str(e.data.get("fallback"))
        if attempt is not None:
            attempt.span.add_event("pyagent.fallback", {"pyagent.fallback.agent": fallback,
                                                        "pyagent.fallback.strategy": str(e.data.get("strategy"))})
            self._end_attempt(key, e.data.get("error"))
        self._start_attempt(e, fallback, number + 1, {"pyagent.fallback.strategy": str(e.data.get("strategy"))})

    def task_noted(self, e: Event) -> None:
        run = self.runs.get(e.run_id)
        if run is not None:
            run.span.add_event(f"pyagent.{e.kind}", {"pyagent.task": e.task or "",
                                                     "pyagent.reason": str(e.data.get("reason") or "")})

    # -- things that happen inside spans ---------------------------------------------------

    def _span_for(self, e: Event) -> Any | None:
        attempt = self.attempts.get((e.run_id, e.task))
        if attempt is not None:
            return attempt.span
        current = self._current()
        return current if current.is_recording() else None

    def handoff(self, e: Event) -> None:
        team = self.teams.get(self._current())
        if team is not None and e.data.get("mode") == "delegate":
            team.delegated[str(e.data.get("reason"))] = time.time_ns()
        span = self._span_for(e)
        if span is None:
            return
        span.add_event("pyagent.handoff", {
            "pyagent.handoff.from": str(e.data.get("from_agent")), "pyagent.handoff.to": str(e.data.get("to_agent")),
            "pyagent.handoff.reason": str(e.data.get("reason") or ""), "pyagent.handoff.mode": str(e.data.get("mode") or "")})

    def circuit(self, e: Event) -> None:
        attributes = {"pyagent.circuit.from": str(e.data.get("from")), "pyagent.circuit.to": str(e.data.get("to")),
                      "pyagent.circuit.reason": str(e.data.get("reason") or "")}
        run = self.runs.get(e.run_id)
        if run is not None:
            run.span.add_event("pyagent.circuit_breaker", attributes)
        elif len(self._early) < _MAX_EARLY:  # before the run's span: the breaker let it in (half-open)
            self._early.setdefault(e.run_id, []).append(("pyagent.circuit_breaker", attributes, time.time_ns()))

    def usage(self, e: Event) -> None:
        span = self._span_for(e)
        if span is None:
            return
        if e.data.get("model"):
            span.set_attribute("gen_ai.request.model", str(e.data["model"]))
        attributes = getattr(span, "attributes", None) or {}
        for kind in ("input", "output"):
            tokens = e.data.get(f"{kind}_tokens")
            if tokens:
                name = f"gen_ai.usage.{kind}_tokens"
                span.set_attribute(name, int(attributes.get(name, 0)) + int(tokens))

    def tool_started(self, e: Event) -> None:
        attempt = self.attempts.get((e.run_id, e.task))
        parent = None if attempt is None else self._in_context(attempt.span)
        tool = str(e.data.get("tool"))
        span = self.tracer.start_span(
            f"execute_tool {tool}", context=parent, kind=self._internal,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                        "gen_ai.tool.call.id": str(e.data.get("call_id")),
                        "gen_ai.agent.name": str(e.data.get("agent") or ""), "pyagent.run_id": e.run_id})
        self.tools[(e.run_id, e.data.get("call_id"))] = span

    def tool_ended(self, e: Event) -> None:
        span = self.tools.pop((e.run_id, e.data.get("call_id")), None)
        if span is None:
            return
        if e.kind == events.TOOL_FAILED:
            error = str(e.data.get("error") or "")
            span.set_attribute("error.type", "cancelled" if error.startswith("cancelled") else error_type(error))
            span.set_status(self._error(e.data.get("error")))
        span.end()

    # -- team patterns ---------------------------------------------------------------------

    def team_started(self, e: Event) -> None:
        name = str(e.data.get("team") or e.workflow)
        span = self.tracer.start_span(
            f"invoke_workflow {name}", kind=self._internal,
            attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name,
                        "pyagent.pattern": str(e.data.get("pattern") or e.workflow), "pyagent.run_id": e.run_id})
        owner = self._current()
        token = self._attach(self._in_context(span))
        self.teams[span] = _Team(span, token, str(e.data.get("pattern") or e.workflow), time.time_ns(), owner)

    def _team(self, e: Event) -> _Team | None:
        team = self.teams.get(self._current())
        if team is None:  # emitted outside the team's context: the latest team of this run
            for candidate in reversed(self.teams.values()):
                if candidate.span.attributes.get("pyagent.run_id") == e.run_id:
                    return candidate
        return team

    def team_turn(self, e: Event) -> None:
        team = self._team(e)
        if team is None:
            return
        now = time.time_ns()
        subtask = e.data.get("subtask")
        if subtask is not None and subtask in team.delegated:
            start = team.delegated.pop(subtask)
        elif team.pattern in _CONCURRENT_TURNS:
            start = team.round_start
        else:
            start = max(team.cursor, team.round_start)
            team.cursor = now
        team.turns.append((e, start, now))

    def team_round(self, e: Event) -> None:
        team = self._team(e)
        if team is None:
            return
        now = time.time_ns()
        number = e.data.get("round")
        attributes: dict[str, Any] = {"pyagent.pattern": team.pattern, "pyagent.round": int(number or 0)}
        if e.data.get("agreement") is not None:
            attributes["pyagent.agreement"] = float(e.data["agreement"])
        span = self.tracer.start_span(f"round {number}", context=self._in_context(team.span),
                                      kind=self._internal, attributes=attributes, start_time=team.round_start)
        self._flush_turns(team, span, lambda t: t[0].data.get("round") == number)
        span.end(end_time=now)
        team.round_start = team.cursor = now

    def team_ended(self, e: Event) -> None:
        team = self._team(e)
        if team is None:
            return
        self._flush_turns(team, team.span, lambda t: True)
        if e.kind == events.TEAM_FAILED:
            team.span.set_attribute("error.type", error_type(e.data.get("error")))
            team.span.set_status(self._error(e.data.get("error")))
        if self._current() is team.span:
            self._detach(team.token)
        team.span.end()
        self.teams.pop(team.span, None)

    def _end_teams_of(self, owner: Any) -> None:
        """End the teams started under ``owner`` that are still open: cut off (a task's timeout,
        a cancelled run) they sent no team.completed or team.failed, and their spans must end
        and leave the current context, or later spans would nest under them."""
        for team in [t for t in self.teams.values() if t.owner is owner]:
            self._end_teams_of(team.span)
            self._flush_turns(team, team.span, lambda t: True)
            team.span.set_attribute("error.type", "cancelled")
            team.span.set_status(self._error("cancelled before the team finished"))
            if self._current() is team.span:
                self._detach(team.token)
            team.span.end()
            self.teams.pop(team.span, None)

    def _flush_turns(self, team: _Team, parent: Any, belongs: Any) -> None:
        keep = []
        ctx = self._in_context(parent)
        for turn in team.turns:
            if not belongs(turn):
                keep.append(turn)
                continue
            e, start, end = turn
            agent = str(e.task or "agent")
            attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                                          "pyagent.pattern": team.pattern, "pyagent.round": int(e.data.get("round") or 0),
                                          "pyagent.phase": str(e.data.get("phase") or "")}
            for field in ("step", "subtask"):
                if e.data.get(field) is not None:
                    attributes[f"pyagent.{field}"] = str(e.data[field])
            span = self.tracer.start_span(f"invoke_agent {agent}", context=ctx, kind=self._internal,
                                          attributes=attributes, start_time=start)
            if e.status == "failed" or e.data.get("error"):
                span.set_attribute("error.type", error_type(e.data.get("error")))
                span.set_status(self._error(e.data.get("error") or "failed"))
            span.end(end_time=end)
        team.turns = keep
