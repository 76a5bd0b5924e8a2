"""The supervised team: the supervisor plans, workers execute, the supervisor synthesizes.

One run is a few phases, each a call of the supervisor agent with ``ctx.phase`` set:

1. ``"plan"`` (round 1): returns the subtasks.
2. The workers execute the round's subtasks concurrently, given out by the strategy.
3. ``"review"`` (only when ``max_rounds > 1``, after every round but the last allowed): sees
   the results so far and returns further subtasks, or none to stop. ``max_rounds`` bounds
   how often this can repeat, so a supervisor that always wants more still ends.
4. ``"synthesize"``: sees every result and returns the answer.

Code supervisors get the task as input when planning and ``{"task": ..., "results": {subtask:
output}}`` when reviewing or synthesizing, plus the same in ``ctx.results``; instruction (LLM)
supervisors get a prompt that asks for the phase's reply, with the results rendered into it.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from pydantic import BaseModel, Field

from pyagent.plugin import (
    Agent,
    ConfigurationError,
    Event,
    InstructionAgent,
    Message,
    PyAgentError,
    RunContext,
    Runtime,
    TaskGroup,
    TaskStatus,
    TeamResult,
    agent,
    announce_handoff,
    as_agent,
    as_agents,
    call_agent,
    check_timeout,
    current_run,
    first_error,
    get_runtime,
    resolve_router,
)
from pyagent.plugin import events as ev

from .plan import PlanError, parse_plan
from .strategies import STRATEGIES, ExpertiseMatch, LoadBalance, Rotation, RoundRobin, WorkerSlot

ON_WORKER_ERROR = ("fail", "continue")


class SupervisorError(PyAgentError):
    """The supervisor agent itself failed in one of its phases."""


class WorkerError(PyAgentError):
    """A worker raised while executing a subtask."""

    def __init__(self, worker: str, subtask: str, error: BaseException, message: str | None = None) -> None:
        self.worker = worker
        self.subtask = subtask
        self.error = error
        super().__init__(
            message or f"worker '{worker}' failed on subtask {subtask!r}: {type(error).__name__}: {error}")


class Assignment(BaseModel):
    """One subtask: who did it, in which round, and how it ended."""

    subtask: str
    worker: str
    round: int
    status: TaskStatus = TaskStatus.PENDING
    output: Any = None
    error: str | None = None
    score: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


class SupervisorResult(TeamResult):
    """``.output`` is the synthesized answer, ``.assignments`` maps each subtask to its worker.

    ``.work`` has every subtask's record in plan order, ``.results`` the outputs by subtask,
    ``.errors`` the failures (with ``on_worker_error="continue"``), ``.rounds`` how many
    delegation rounds ran.
    """

    pattern: str = "supervisor"
    strategy: str = "round_robin"
    assignments: dict[str, str] = Field(default_factory=dict)
    work: list[Assignment] = Field(default_factory=list)
    results: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    rounds: int = 0


class SupervisorTeam:
    """A supervisor and its workers; ``await team.run(task)`` returns a :class:`SupervisorResult`.

    ``team.as_agent()`` makes it a step of a workflow or a worker of another team.

    ``max_rounds`` > 1 lets the supervisor review results and delegate more (phase
    ``"review"``); ``worker_concurrency`` caps subtasks in flight per worker (load_balance
    defaults to 1); ``router`` picks the router for ``expertise_match`` (default: the
    installed default router); ``on_worker_error="continue"`` lets the supervisor
    synthesize from the subtasks that succeeded; ``worker_timeout`` (seconds) cancels a
    subtask whose worker has not answered by then and counts it as a worker error.
    """

    def __init__(
        self,
        *,
        supervisor: Any,
        workers: list[Any],
        strategy: str = "round_robin",
        max_rounds: int = 1,
        worker_concurrency: int | None = None,
        router: Any = None,
        on_worker_error: str = "fail",
        worker_timeout: float | None = None,
        name: str = "supervisor",
        description: str = "",
    ) -> None:
        self.supervisor = as_agent(supervisor, what="supervisor")
        self.workers = as_agents(workers, what="worker", param="workers", distinct_because="assignments are by name")
        if strategy not in STRATEGIES:
            raise ConfigurationError(
                f"unknown supervisor strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}"
            )
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be a whole number >= 1, got {max_rounds!r}")
        if worker_concurrency is not None and (
            isinstance(worker_concurrency, bool) or not isinstance(worker_concurrency, int)
            or worker_concurrency < 1
        ):
            raise ConfigurationError(
                f"worker_concurrency must be None (unbounded) or a whole number >= 1, got {worker_concurrency!r}"
            )
        if on_worker_error not in ON_WORKER_ERROR:
            raise ConfigurationError(
                f"on_worker_error must be one of {', '.join(ON_WORKER_ERROR)}, got {on_worker_error!r}"
            )
        self.worker_timeout = check_timeout(worker_timeout, "worker_timeout")
        self.strategy = strategy
        self.router = resolve_router(router) if strategy == "expertise_match" else None
        self.max_rounds = max_rounds
        # load_balance hands one subtask at a time to each worker unless told otherwise.
        self.worker_concurrency = (
            worker_concurrency if worker_concurrency is not None
            else (1 if strategy == "load_balance" else None)
        )
        self.on_worker_error = on_worker_error
        # Kept across runs: round_robin continues its rotation, load_balance remembers busy time,
        # expertise_match breaks ties by subtasks taken so far.
        self.rotation = Rotation()
        self.busy: dict[str, float] = {}
        self.taken: dict[str, int] = {}
        self.name = name
        self.description = description or (
            f"a supervisor ({self.supervisor.name}) with workers {', '.join(w.name for w in self.workers)}"
        )

    async def run(self, input: Any, ctx: RunContext | None = None) -> SupervisorResult:
        """Plan, delegate, (review,) synthesize. Failures give a failed result with the cause."""
        return await _SupervisorRun(self, input).execute()

    def as_agent(self, *, name: str | None = None, description: str | None = None) -> Agent:
        """An agent whose output is the team's answer; a failed team run raises, failing its step."""

        async def run_team(task: Any) -> Any:
            return (await self.run(task)).raise_for_status().output

        return agent(run_team, name=name or self.name, description=description or self.description)

    def __repr__(self) -> str:
        return (f"SupervisorTeam(supervisor={self.supervisor.name!r}, "
                f"workers={[w.name for w in self.workers]}, strategy={self.strategy!r})")


class _SupervisorRun:
    """One run of a team: the round's dispatch, the results so far, and the result being built."""

    def __init__(self, team: SupervisorTeam, task: Any) -> None:
        self.team = team
        self.task = task
        self.runtime: Runtime = get_runtime()
        enclosing = current_run()  # a team inside a workflow run shares its id and audit trail
        self.run_id = enclosing.run_id if enclosing is not None else uuid.uuid4().hex
        self.state: dict[str, Any] = {}
        capacity = team.worker_concurrency
        self.slots = [WorkerSlot(w, i, capacity) for i, w in enumerate(team.workers)]
        for slot in self.slots:
            slot.busy = team.busy.get(slot.name, 0.0)
            slot.assigned = team.taken.get(slot.name, 0)
        self.result = SupervisorResult(run_id=self.run_id, strategy=team.strategy,
                                       started_at=self.runtime.clock.time())
        self.strategy: Any
        if team.strategy == "round_robin":
            self.strategy = RoundRobin(team.rotation)
        elif team.strategy == "load_balance":
            self.strategy = LoadBalance()
            for slot in self.slots:
                slot.limiter = None  # the dispatcher itself keeps each worker within capacity
        else:
            assert team.router is not None
            self.strategy = ExpertiseMatch(*team.router)
        self._changed = anyio.Event()

    # -- phases --------------------------------------------------------------------------

    async def execute(self) -> SupervisorResult:
        result = self.result
        team = self.team
        self._emit(ev.TEAM_STARTED, status="running", input=self.task, strategy=team.strategy,
                   agents=[team.supervisor.name, *(w.name for w in team.workers)])
        try:
            subtasks = await self._ask_for_subtasks("plan", 1)
            if not subtasks:
                raise PlanError(
                    f"supervisor '{team.supervisor.name}' planned no subtasks for {self.task!r}: "
                    "return at least one subtask in the plan phase"
                )
            rnd = 1
            while True:
                try:
                    await self._delegate(subtasks, rnd)
                finally:
                    # In plan order, whatever order the workers finished in.
                    result.results = {w.subtask: w.output for w in result.work
                                      if w.status is TaskStatus.COMPLETED}
                result.rounds = rnd
                self._emit(ev.TEAM_ROUND, status="completed", round=rnd,
                           subtasks=[w.subtask for w in result.work if w.round == rnd],
                           errors=[w.subtask for w in result.work if w.round == rnd and w.error])
                if result.errors and len(result.errors) == len(result.work):
                    subtask, first = next(iter(result.errors.items()))
                    raise WorkerError(result.assignments[subtask], subtask, RuntimeError(first), message=(
                        f"every subtask failed, so there is nothing to synthesize; the first, {subtask!r}: {first}"))
                if rnd >= team.max_rounds:
                    break
                subtasks = await self._ask_for_subtasks("review", rnd)
                if not subtasks:
                    break
                rnd += 1
            result.output = await self._ask("synthesize", rnd)
            self._say(team.supervisor.name, result.output, rnd, "synthesize")
        except Exception as exc:
            result.status = TaskStatus.FAILED
            result.exception = exc
            result.error = f"{type(exc).__name__}: {exc}"
            for rec in result.work:
                if rec.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
                    rec.status = TaskStatus.CANCELLED
            self._emit(ev.TEAM_FAILED, status="failed", error=result.error, rounds=result.rounds)
        else:
            self._emit(ev.TEAM_COMPLETED, status="completed", output=result.output,
                       rounds=result.rounds, assignments=dict(result.assignments))
        result.finished_at = self.runtime.clock.time()
        return result

    def _emit(self, kind: str, *, agent: str | None = None, status: str | None = None, **data: Any) -> None:
        """A team event for monitors, as the other team patterns send (``workflow`` is the pattern)."""
        self.runtime.broadcast(Event(kind, workflow="supervisor", run_id=self.run_id, task=agent,
                                     status=status, timestamp=self.runtime.clock.time(),
                                     data={"pattern": "supervisor", "team": self.team.name, **data}))

    async def _ask_for_subtasks(self, phase: str, rnd: int) -> list[str]:
        # A model supervisor is asked for structured output (a JSON list of strings); one that
        # answers in prose anyway is read by parse_plan, as a code supervisor's output is.
        raw = await self._ask(phase, rnd, output_type=list[str])
        subtasks = parse_plan(raw, supervisor=self.team.supervisor.name, phase=phase)
        self._say(self.team.supervisor.name, subtasks, rnd, phase)
        return subtasks

    async def _ask(self, phase: str, rnd: int, output_type: Any = None) -> Any:
        sup = self.team.supervisor
        ctx = RunContext(run_id=self.run_id, phase=phase, round=rnd, results=dict(self.result.results),
                         state=self.state, extra=self._extra())
        try:
            return await call_agent(sup, self._supervisor_input(phase, rnd), ctx, output_type=output_type)
        except Exception as exc:
            raise SupervisorError(
                f"supervisor '{sup.name}' failed in the {phase} phase: {type(exc).__name__}: {exc}"
            ) from exc

    def _extra(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "workers": {w.name: w.description for w in self.team.workers},
            "assignments": dict(self.result.assignments),
            "errors": dict(self.result.errors),
            "max_rounds": self.team.max_rounds,
        }

    def _supervisor_input(self, phase: str, rnd: int) -> Any:
        team = self.team
        if not isinstance(team.supervisor, InstructionAgent):
            if phase == "plan":
                return self.task
            return {"task": self.task, "results": dict(self.result.results)}
        task = str(self.task)
        if phase == "plan":
            workers = "\n".join(f"- {w.name}: {w.description}" for w in team.workers)
            return (f"{task}\n\nYou supervise these workers:\n{workers}\n\nBreak the task into "
                    "independent subtasks for them. Reply with a JSON list of subtask strings only.")
        failed = ""
        if self.result.errors:
            failed = "\n\nFailed subtasks:\n" + "\n".join(f"- {k}: {v}" for k, v in self.result.errors.items())
        if phase == "review":
            return (f"{task}\n\nRound {rnd} of at most {team.max_rounds} is done; the workers' results "
                    "are below. If more work is needed, reply with a JSON list of further subtasks; "
                    f"otherwise reply with [].{failed}")
        return f"{task}\n\nCombine the workers' results below into the final answer.{failed}"

    # -- delegation ----------------------------------------------------------------------

    def _key(self, subtask: str) -> str:
        """A subtask's key in ``assignments``: its text, numbered when the same text came before."""
        key, n = subtask, 1
        while key in self.result.assignments:
            n += 1
            key = f"{subtask} ({n})"
        return key

    def _add(self, subtask: str, slot: WorkerSlot, rnd: int, score: float | None) -> Assignment:
        key = self._key(subtask)
        rec = Assignment(subtask=key, worker=slot.name, round=rnd, score=score)
        self.result.assignments[key] = slot.name
        self.result.work.append(rec)
        slot.assigned += 1
        self.team.taken[slot.name] = self.team.taken.get(slot.name, 0) + 1
        announce_handoff(self.team.supervisor.name, slot.name, key, mode="delegate", source=self.team.name,
                         run_id=self.run_id, round=rnd, strategy=self.team.strategy)
        return rec

    async def _delegate(self, subtasks: list[str], rnd: int) -> None:
        try:
            async with TaskGroup() as tg:
                if self.strategy.dynamic:
                    for subtask in subtasks:
                        slot = self.strategy.pick(self.slots)
                        while slot is None:
                            await self._changed.wait()
                            slot = self.strategy.pick(self.slots)
                        slot.in_flight += 1  # reserve it now: the next pick must see it busy
                        tg.start_soon(self._work, subtask, self._add(subtask, slot, rnd, None), slot)
                else:
                    planned = []
                    for subtask in subtasks:
                        slot, score = await self.strategy.choose(subtask, self.slots)
                        planned.append((subtask, self._add(subtask, slot, rnd, score), slot))
                    for subtask, rec, slot in planned:
                        tg.start_soon(self._limited_work, subtask, rec, slot)
        except Exception as exc:
            raise first_error(exc) from None

    async def _limited_work(self, subtask: str, rec: Assignment, slot: WorkerSlot) -> None:
        if slot.limiter is None:
            slot.in_flight += 1
            await self._work(subtask, rec, slot)
            return
        async with slot.limiter:
            slot.in_flight += 1
            await self._work(subtask, rec, slot)

    async def _work(self, subtask: str, rec: Assignment, slot: WorkerSlot) -> None:
        """Run one subtask on its worker (``slot.in_flight`` already counts it) and record the outcome."""
        clock = self.runtime.clock
        started = clock.monotonic()
        rec.status, rec.started_at = TaskStatus.RUNNING, clock.time()
        worker = slot.agent
        ctx = RunContext(run_id=self.run_id, phase="work", round=rec.round, results=dict(self.result.results),
                         state=self.state, extra={"task": self.task, "subtask": subtask, "worker": worker.name})
        try:
            output = await self._run_worker(worker, subtask, ctx)
        except Exception as exc:
            rec.status, rec.error = TaskStatus.FAILED, f"{type(exc).__name__}: {exc}"
            self._say(worker.name, None, rec.round, "worker", subtask=rec.subtask, error=rec.error)
            if self.team.on_worker_error == "fail":
                raise WorkerError(worker.name, rec.subtask, exc) from exc
            self.result.errors[rec.subtask] = f"worker '{worker.name}' failed: {rec.error}"
        except BaseException:
            rec.status = TaskStatus.CANCELLED
            raise
        else:
            rec.status, rec.output = TaskStatus.COMPLETED, output
            self._say(worker.name, output, rec.round, "worker", subtask=rec.subtask)
        finally:
            rec.finished_at = clock.time()
            spent = clock.monotonic() - started
            slot.busy += spent
            self.team.busy[slot.name] = self.team.busy.get(slot.name, 0.0) + spent
            slot.in_flight -= 1
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def _run_worker(self, worker: Agent, subtask: str, ctx: RunContext) -> Any:
        """The worker's answer; past ``worker_timeout`` it is cancelled and the subtask fails."""
        return await call_agent(worker, self._worker_input(worker, subtask), ctx,
                                timeout=self.team.worker_timeout, setting="worker_timeout")

    def _worker_input(self, worker: Agent, subtask: str) -> Any:
        if isinstance(worker, InstructionAgent):
            return f"{subtask}\n\n(This is part of the overall task: {self.task})"
        return subtask

    def _say(self, agent: str, content: Any, rnd: int, role: str, **metadata: Any) -> None:
        """Add to the transcript; every entry is also a ``team.turn`` event."""
        self.result.transcript.append(Message(agent, content, round=rnd, role=role, metadata=metadata))
        phase = "work" if role == "worker" else role
        status = "failed" if metadata.get("error") else "completed"
        self._emit(ev.TEAM_TURN, agent=agent, status=status, round=rnd, phase=phase, output=content,
                   **metadata)
