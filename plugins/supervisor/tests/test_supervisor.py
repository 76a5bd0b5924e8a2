"""The supervisor pattern: phases, strategies, concurrency, review rounds and failures."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pyagent_supervisor import PlanError, SupervisorError, SupervisorResult, WorkerError

from pyagent import agent, hookimpl
from pyagent.errors import ConfigurationError, PluginNotInstalledError
from pyagent.model.context import RunContext
from pyagent.model.events import HANDOFF
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import AgentPatterns
from pyagent.plugins import Runtime
from pyagent.testing import ManualClock, ScriptedModel


def planner(*subtasks: str, phases: list[str] | None = None) -> Any:
    """A code supervisor that plans ``subtasks`` and joins the results in plan order."""

    def manager(x: Any, ctx: RunContext) -> Any:
        if phases is not None:
            phases.append(str(ctx.phase))
        if ctx.phase == "plan":
            return list(subtasks)
        return " | ".join(f"{k}={v}" for k, v in x["results"].items())

    return agent(manager, name="manager")


def echo(name: str) -> Any:
    return agent(lambda s, n=name: f"{n}:{s}", name=name, description=f"{name} work")


def workers(*names: str) -> list[Any]:
    return [echo(n) for n in names]


@pytest.mark.anyio
async def test_plan_work_synthesize(runtime: Runtime) -> None:
    seen: dict[str, Any] = {}

    def manager(x: Any, ctx: RunContext) -> Any:
        if ctx.phase == "plan":
            assert x == "Build a feature report on AI"
            return ["research", "analyse", "code"]
        seen["input"], seen["results"], seen["phase"] = x, dict(ctx.results), ctx.phase
        return "report: " + ", ".join(x["results"].values())

    team = AgentPatterns.supervisor(supervisor=manager, workers=workers("researcher", "analyst", "developer"),
                                    strategy="round_robin")
    result = await team.run("Build a feature report on AI")
    assert isinstance(result, SupervisorResult) and result.ok
    assert result.output == "report: researcher:research, analyst:analyse, developer:code"
    assert result.assignments == {"research": "researcher", "analyse": "analyst", "code": "developer"}
    assert seen["phase"] == "synthesize"
    assert seen["input"] == {"task": "Build a feature report on AI", "results": seen["results"]}
    assert seen["results"] == {"research": "researcher:research", "analyse": "analyst:analyse",
                               "code": "developer:code"}
    assert result.rounds == 1
    roles = [(m.agent, m.role) for m in result.transcript]
    assert roles[0] == ("manager", "plan") and roles[-1] == ("manager", "synthesize")


@pytest.mark.anyio
async def test_round_robin_rotates_through_workers(runtime: Runtime) -> None:
    phases: list[str] = []
    sup = planner(*(f"s{i}" for i in range(7)), phases=phases)
    team = AgentPatterns.supervisor(supervisor=sup, workers=workers("a", "b", "c"))
    result = await team.run("task")
    assert list(result.assignments.values()) == ["a", "b", "c", "a", "b", "c", "a"]
    assert phases == ["plan", "synthesize"]


@pytest.mark.anyio
async def test_independent_subtasks_run_concurrently(runtime: Runtime) -> None:
    started = 0
    all_started = anyio.Event()

    async def worker(s: str) -> str:
        nonlocal started
        started += 1
        if started == 4:
            all_started.set()
        await all_started.wait()  # only returns if all four are in flight at once
        return s

    team = AgentPatterns.supervisor(
        supervisor=planner("a", "b", "c", "d"),
        workers=[agent(worker, name="w1"), agent(worker, name="w2")],
    )
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.ok and len(result.results) == 4


@pytest.mark.anyio
async def test_load_balance_gives_faster_workers_more(runtime: Runtime) -> None:
    fast_done = 0
    fast_finished_four = anyio.Event()
    in_flight: dict[str, int] = {"slow": 0, "fast": 0}
    peak: dict[str, int] = {"slow": 0, "fast": 0}

    def track(name: str, delta: int) -> None:
        in_flight[name] += delta
        peak[name] = max(peak[name], in_flight[name])

    async def slow(s: str) -> str:
        track("slow", 1)
        await fast_finished_four.wait()  # slow: busy until the fast worker has done four
        track("slow", -1)
        return s

    async def fast(s: str) -> str:
        nonlocal fast_done
        track("fast", 1)
        await anyio.sleep(0)
        track("fast", -1)
        fast_done += 1
        if fast_done == 4:
            fast_finished_four.set()
        return s

    team = AgentPatterns.supervisor(
        supervisor=planner("s1", "s2", "s3", "s4", "s5"),
        workers=[agent(slow, name="slow"), agent(fast, name="fast")],
        strategy="load_balance",
    )
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.ok, result.error
    assert result.assignments == {"s1": "slow", "s2": "fast", "s3": "fast", "s4": "fast", "s5": "fast"}
    assert peak == {"slow": 1, "fast": 1}  # one subtask at a time per worker


@pytest.mark.anyio
async def test_load_balance_ties_go_to_the_least_busy_worker(runtime: Runtime) -> None:
    runtime.clock = clock = ManualClock()
    cost = {"r1-a": 10.0, "r1-b": 1.0, "r1-c": 5.0}

    def make(name: str) -> Any:
        async def work(s: str) -> str:
            await clock.sleep(cost.get(s, 0.0))
            return f"{name}:{s}"
        return agent(work, name=name)

    rounds = [["r1-a", "r1-b", "r1-c"], ["r2-x", "r2-y"]]

    def manager(x: Any, ctx: RunContext) -> Any:
        if ctx.phase == "plan":
            return rounds[0]
        if ctx.phase == "review":  # ctx.round is the round just finished
            return rounds[ctx.round] if ctx.round < len(rounds) else []
        return "done"

    team = AgentPatterns.supervisor(supervisor=manager, workers=[make("a"), make("b"), make("c")],
                                    strategy="load_balance", max_rounds=2)
    result = await team.run("t")
    assert result.ok, result.error
    # Round 1: all idle and unused, so worker order. Round 2: all idle again; b (1s busy), then c (5s).
    assert result.assignments == {"r1-a": "a", "r1-b": "b", "r1-c": "c", "r2-x": "b", "r2-y": "c"}


@pytest.mark.anyio
async def test_worker_concurrency_allows_several_in_flight(runtime: Runtime) -> None:
    both = anyio.Event()
    count = 0

    async def worker(s: str) -> str:
        nonlocal count
        count += 1
        if count == 2:
            both.set()
        await both.wait()
        return s

    team = AgentPatterns.supervisor(supervisor=planner("a", "b"), workers=[agent(worker, name="only")],
                                    strategy="load_balance", worker_concurrency=2)
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.assignments == {"a": "only", "b": "only"}


class RouterPlugin:
    """A throwaway router: 1.0 for an agent whose description shares a word with the query."""

    def __init__(self, name: str = "overlap", default: bool = True) -> None:
        self.name, self.default = name, default

    def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
        words = set(query.lower().split())
        return [(a.name, 1.0 if words & set(a.description.lower().split()) else 0.0) for a in agents]

    @hookimpl
    def pyagent_register_routers(self, register: Any) -> None:
        register(self.name, self, default=self.default)


@pytest.mark.anyio
async def test_expertise_match_asks_the_router(runtime: Runtime) -> None:
    runtime.register(RouterPlugin(), "overlap-router")
    crew = [
        agent(lambda s: "R:" + s, name="researcher", description="research sources papers"),
        agent(lambda s: "A:" + s, name="analyst", description="analyse numbers charts"),
        agent(lambda s: "D:" + s, name="developer", description="code python tests"),
    ]
    team = AgentPatterns.supervisor(
        supervisor=planner("write python code", "find research papers", "draw charts", "sing a song",
                           "hum a tune"),
        workers=crew, strategy="expertise_match",
    )
    result = await team.run("t")
    assert result.ok, result.error
    assert result.assignments["write python code"] == "developer"
    assert result.assignments["find research papers"] == "researcher"
    assert result.assignments["draw charts"] == "analyst"
    # No worker fits: the tie goes to whoever has taken the fewest, in worker order.
    assert result.assignments["sing a song"] == "researcher"
    assert result.assignments["hum a tune"] == "analyst"
    assert [w.score for w in result.work] == [1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.anyio
async def test_expertise_match_uses_the_named_router(runtime: Runtime) -> None:
    runtime.register(RouterPlugin(), "overlap-router")

    class Last:
        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return [(agents[-1].name, 0.9)]

    runtime.register(type("P", (), {"pyagent_register_routers": hookimpl(
        lambda self, register: register("last", Last()))})(), "last-router")
    team = AgentPatterns.supervisor(supervisor=planner("research papers"), workers=[
        agent(lambda s: s, name="researcher", description="research papers"),
        agent(lambda s: s, name="other", description="other"),
    ], strategy="expertise_match", router="last")
    assert (await team.run("t")).assignments == {"research papers": "other"}


def test_expertise_match_without_a_router_names_the_plugin(bare_runtime: Runtime) -> None:
    from pyagent_supervisor import SupervisorPattern

    bare_runtime.register(__import__("pyagent_supervisor"), "supervisor")
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-keyword-router"):
        AgentPatterns.supervisor(supervisor=planner("x"), workers=workers("a"), strategy="expertise_match")
    assert SupervisorPattern().build(supervisor=planner("x"), workers=workers("a")).strategy == "round_robin"


@pytest.mark.anyio
async def test_review_rounds_delegate_more_and_see_earlier_results(runtime: Runtime) -> None:
    seen_results: list[dict[str, Any]] = []

    def manager(x: Any, ctx: RunContext) -> Any:
        if ctx.phase == "plan":
            return ["draft"]
        if ctx.phase == "review":
            seen_results.append(dict(ctx.results))
            return ["polish"] if ctx.round == 1 else []
        return x["results"]["polish"]

    def editor(s: str, ctx: RunContext) -> str:
        return f"{s} of ({ctx.results.get('draft', 'nothing')})"

    team = AgentPatterns.supervisor(supervisor=manager, workers=[agent(editor, name="editor")],
                                    max_rounds=5)
    result = await team.run("essay")
    assert result.ok and result.rounds == 2
    assert result.output == "polish of (draft of (nothing))"
    assert seen_results == [{"draft": "draft of (nothing)"},
                            {"draft": "draft of (nothing)", "polish": "polish of (draft of (nothing))"}]
    assert [w.round for w in result.work] == [1, 2]


@pytest.mark.anyio
async def test_max_rounds_ends_a_supervisor_that_always_wants_more(runtime: Runtime) -> None:
    phases: list[str] = []

    def greedy(x: Any, ctx: RunContext) -> Any:
        phases.append(str(ctx.phase))
        return "enough" if ctx.phase == "synthesize" else ["more work"]

    team = AgentPatterns.supervisor(supervisor=greedy, workers=workers("a", "b"), max_rounds=3)
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.ok and result.rounds == 3 and result.output == "enough"
    assert phases == ["plan", "review", "review", "synthesize"]
    # Repeated subtask text gets distinct keys; the rotation carries over between rounds.
    assert result.assignments == {"more work": "a", "more work (2)": "b", "more work (3)": "a"}


@pytest.mark.anyio
async def test_llm_supervisor_plans_in_text_and_sees_results(runtime: Runtime) -> None:
    model = ScriptedModel(["Sure! Subtasks:\n1. Research AI trends\n2. Analyse adoption", "Final report"])
    manager = agent("You manage a research team", name="manager", model=model)
    crew = [agent(lambda s: "trends found", name="researcher", description="finds sources"),
            agent(lambda s: "adoption is up", name="analyst", description="analyses data")]
    result = await AgentPatterns.supervisor(supervisor=manager, workers=crew).run("Report on AI")
    assert result.ok and result.output == "Final report"
    assert result.assignments == {"Research AI trends": "researcher", "Analyse adoption": "analyst"}
    plan_prompt, synth_prompt = model.prompts
    assert "Report on AI" in plan_prompt and "researcher: finds sources" in plan_prompt
    assert "JSON list" in plan_prompt
    assert "trends found" in synth_prompt and "adoption is up" in synth_prompt
    assert "Phase: synthesize" in synth_prompt


@pytest.mark.anyio
async def test_llm_workers_get_the_subtask_and_the_overall_task(runtime: Runtime) -> None:
    model = ScriptedModel(lambda prompt: "ok")
    worker = agent("You research", name="researcher", model=model)
    result = await AgentPatterns.supervisor(supervisor=planner("find sources"), workers=[worker]).run("AI report")
    assert result.ok
    assert "find sources" in model.prompts[0] and "AI report" in model.prompts[0]


def test_bad_options_raise_before_anything_runs(runtime: Runtime) -> None:
    sup = planner("x")
    with pytest.raises(ConfigurationError, match="no workers"):
        AgentPatterns.supervisor(supervisor=sup, workers=[])
    with pytest.raises(ConfigurationError, match=r"unknown supervisor strategy 'fastest'.*round_robin"):
        AgentPatterns.supervisor(supervisor=sup, workers=workers("a"), strategy="fastest")
    with pytest.raises(ConfigurationError, match="max_rounds"):
        AgentPatterns.supervisor(supervisor=sup, workers=workers("a"), max_rounds=0)
    with pytest.raises(ConfigurationError, match="distinct names"):
        AgentPatterns.supervisor(supervisor=sup, workers=workers("a", "a"))
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        AgentPatterns.supervisor(supervisor=sup, workers=workers("a"), worker_concurrency=0)
    with pytest.raises(ConfigurationError, match="on_worker_error"):
        AgentPatterns.supervisor(supervisor=sup, workers=workers("a"), on_worker_error="ignore")
    with pytest.raises(ConfigurationError, match="workers= must be a list"):
        AgentPatterns.supervisor(supervisor=sup, workers=None)  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize(("plan", "message"), [
    (42, "returned 42 in the plan phase, which is not a list of subtasks"),
    ([], "planned no subtasks"),
    ({"verdict": "yes"}, "needs a 'subtasks' list"),
])
async def test_a_bad_plan_fails_the_run_with_the_cause(runtime: Runtime, plan: Any, message: str) -> None:
    called: list[str] = []
    team = AgentPatterns.supervisor(supervisor=lambda x: plan,
                                    workers=[agent(lambda s: called.append(s), name="w")])
    result = await team.run("t")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, PlanError)
    assert message in (result.error or "")
    assert called == []


@pytest.mark.anyio
async def test_a_failing_worker_fails_the_run_and_cancels_the_others(runtime: Runtime) -> None:
    async def stuck(s: str) -> str:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def broken(s: str) -> str:
        await anyio.sleep(0)
        raise ValueError("disk full")

    team = AgentPatterns.supervisor(supervisor=planner("wait", "explode"),
                                    workers=[agent(stuck, name="stuck"), agent(broken, name="broken")])
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, WorkerError)
    assert "worker 'broken' failed on subtask 'explode': ValueError: disk full" in (result.error or "")
    statuses = {w.subtask: w.status for w in result.work}
    assert statuses == {"wait": TaskStatus.CANCELLED, "explode": TaskStatus.FAILED}


@pytest.mark.anyio
async def test_continue_on_worker_error_synthesizes_from_the_rest(runtime: Runtime) -> None:
    seen: dict[str, Any] = {}

    def manager(x: Any, ctx: RunContext) -> Any:
        if ctx.phase == "plan":
            return ["good", "bad"]
        seen.update(ctx.extra["errors"])
        return sorted(x["results"])

    def work(s: str) -> str:
        if s == "bad":
            raise RuntimeError("nope")
        return s

    team = AgentPatterns.supervisor(supervisor=manager, on_worker_error="continue",
                                    workers=[agent(work, name="w1"), agent(work, name="w2")])
    result = await team.run("t")
    assert result.ok and result.output == ["good"]
    assert result.errors == {"bad": "worker 'w2' failed: RuntimeError: nope"} == seen

    all_bad = await AgentPatterns.supervisor(
        supervisor=planner("bad"), on_worker_error="continue", workers=[agent(work, name="w")]).run("t")
    assert all_bad.status is TaskStatus.FAILED
    assert "every subtask failed, so there is nothing to synthesize" in (all_bad.error or "")
    assert "'bad': worker 'w' failed: RuntimeError: nope" in (all_bad.error or "")


@pytest.mark.anyio
async def test_a_failing_supervisor_names_the_phase(runtime: Runtime) -> None:
    def manager(x: Any, ctx: RunContext) -> Any:
        if ctx.phase == "plan":
            return ["a"]
        raise KeyError("summary")

    result = await AgentPatterns.supervisor(supervisor=manager, workers=workers("w")).run("t")
    assert result.status is TaskStatus.FAILED and isinstance(result.exception, SupervisorError)
    assert "failed in the synthesize phase: KeyError" in (result.error or "")
    assert result.results == {"a": "w:a"}  # the work done is kept


class Monitor:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.mark.anyio
async def test_every_delegation_is_a_handoff_event(runtime: Runtime) -> None:
    monitor = Monitor()
    runtime.register(monitor, "monitor")
    result = await AgentPatterns.supervisor(supervisor=planner("x", "y"), workers=workers("a", "b")).run("t")
    delegations = [(e.data["from_agent"], e.data["to_agent"], e.data["reason"]) for e in monitor.events
                   if e.kind == HANDOFF and e.run_id == result.run_id]
    assert delegations == [("manager", "a", "x"), ("manager", "b", "y")]


@pytest.mark.anyio
async def test_a_team_as_an_agent_answers_with_its_output(runtime: Runtime) -> None:
    team = AgentPatterns.supervisor(supervisor=planner("x"), workers=workers("a"), name="crew")
    crew = team.as_agent()
    assert crew.name == "crew" and "manager" in crew.description
    assert await crew.run("t", RunContext()) == "x=a:x"
    broken = AgentPatterns.supervisor(supervisor=lambda t: 42, workers=workers("a")).as_agent()
    with pytest.raises(PlanError):
        await broken.run("t", RunContext())


@pytest.mark.anyio
async def test_round_robin_rotation_continues_across_runs_of_a_team(runtime: Runtime) -> None:
    # A team that serves many tasks, each planned as one subtask, must not send them all to
    # the first worker.
    team = AgentPatterns.supervisor(supervisor=planner("only"), workers=workers("a", "b", "c"))
    used = [(await team.run(f"task {i}")).assignments["only"] for i in range(4)]
    assert used == ["a", "b", "c", "a"]


@pytest.mark.anyio
async def test_load_balance_remembers_busy_time_across_runs(runtime: Runtime) -> None:
    runtime.clock = clock = ManualClock()

    def make(name: str) -> Any:
        async def work(s: str) -> str:
            await clock.sleep(3.0)
            return s
        return agent(work, name=name)

    team = AgentPatterns.supervisor(supervisor=planner("job"), workers=[make("a"), make("b")],
                                    strategy="load_balance")
    used = [(await team.run(f"task {i}")).assignments["job"] for i in range(3)]
    assert used == ["a", "b", "a"]  # idle, then the one with less busy time so far


@pytest.mark.anyio
async def test_a_hanging_worker_times_out_and_fails_the_run(runtime: Runtime) -> None:
    async def hangs(s: str) -> str:
        await anyio.sleep_forever()
        return s

    team = AgentPatterns.supervisor(supervisor=planner("a", "b"),
                                    workers=[agent(hangs, name="stuck"), echo("ok")],
                                    worker_timeout=0.05)
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, WorkerError)
    assert "worker 'stuck' failed on subtask 'a'" in str(result.error)
    assert "worker_timeout=0.05" in str(result.error)
    assert result.work[0].status is TaskStatus.FAILED


@pytest.mark.anyio
async def test_with_continue_a_timed_out_subtask_is_an_error_and_the_rest_is_synthesized(
        runtime: Runtime) -> None:
    async def hangs(s: str) -> str:
        await anyio.sleep_forever()
        return s

    team = AgentPatterns.supervisor(supervisor=planner("a", "b"),
                                    workers=[agent(hangs, name="stuck"), echo("ok")],
                                    worker_timeout=0.05, on_worker_error="continue")
    with anyio.fail_after(5):
        result = await team.run("t")
    assert result.ok, result.error
    assert result.output == "b=ok:b"
    assert "worker_timeout=0.05" in result.errors["a"]


@pytest.mark.anyio
async def test_a_worker_raising_timeout_error_itself_is_reported_as_it_is(runtime: Runtime) -> None:
    def raises(s: str) -> str:
        raise TimeoutError("upstream API timed out")

    team = AgentPatterns.supervisor(supervisor=planner("a"), workers=[agent(raises, name="w")],
                                    worker_timeout=5)
    result = await team.run("t")
    assert "upstream API timed out" in str(result.error)


def test_worker_timeout_must_be_positive(runtime: Runtime) -> None:
    for bad in (0, -1, "10", True):
        with pytest.raises(ConfigurationError, match="worker_timeout"):
            AgentPatterns.supervisor(supervisor=planner("x"), workers=workers("a"), worker_timeout=bad)


@pytest.mark.anyio
async def test_expertise_match_ties_count_subtasks_across_runs(runtime: Runtime) -> None:
    # No worker fits "file the paperwork": the tie goes to whoever has taken fewer, run after run.
    runtime.register(RouterPlugin(), "overlap-router")
    team = AgentPatterns.supervisor(supervisor=planner("file the paperwork"),
                                    workers=workers("researcher", "analyst"), strategy="expertise_match")
    used = [(await team.run(f"task {i}")).assignments["file the paperwork"] for i in range(3)]
    assert used == ["researcher", "analyst", "researcher"]


@pytest.mark.anyio
async def test_a_run_is_team_events_like_the_other_team_patterns(runtime: Runtime) -> None:
    from pyagent.model import events as ev

    monitor = Monitor()
    runtime.register(monitor, "monitor")
    result = await AgentPatterns.supervisor(supervisor=planner("x", "y"), workers=workers("a", "b")).run("t")
    mine = [e for e in monitor.events if e.run_id == result.run_id and e.kind.startswith("team.")]
    assert mine[0].kind == ev.TEAM_STARTED and mine[0].workflow == "supervisor"
    assert mine[-1].kind == ev.TEAM_COMPLETED and mine[-1].data["output"] == result.output
    turns = [(e.task, e.data["phase"]) for e in mine if e.kind == ev.TEAM_TURN]
    assert turns[0] == ("manager", "plan") and turns[-1] == ("manager", "synthesize")
    assert sorted(turns[1:-1]) == [("a", "work"), ("b", "work")]
    rounds = [e.data["round"] for e in mine if e.kind == ev.TEAM_ROUND]
    assert rounds == [1]


@pytest.mark.anyio
async def test_a_failed_run_is_a_team_failed_event(runtime: Runtime) -> None:
    from pyagent.model import events as ev

    monitor = Monitor()
    runtime.register(monitor, "monitor")
    result = await AgentPatterns.supervisor(supervisor=lambda t: 42, workers=workers("a")).run("t")
    failed = [e for e in monitor.events if e.run_id == result.run_id and e.kind == ev.TEAM_FAILED]
    assert len(failed) == 1 and "PlanError" in failed[0].data["error"]


@pytest.mark.anyio
async def test_llm_supervisor_is_asked_for_a_structured_plan(runtime: Runtime) -> None:
    model = ScriptedModel([{"result": ["Research AI trends", "Analyse adoption"]}, "Final report"])
    manager = agent("You manage a research team", name="manager", model=model)
    crew = [agent(lambda s: "trends", name="researcher"), agent(lambda s: "adoption", name="analyst")]
    result = await AgentPatterns.supervisor(supervisor=manager, workers=crew).run("Report on AI")
    assert result.ok and list(result.assignments) == ["Research AI trends", "Analyse adoption"]
    plan_request, synth_request = model.requests
    assert plan_request.output is not None and plan_request.output.schema["properties"]["result"]["type"] == "array"
    assert synth_request.output is None  # the synthesis is the answer itself, in text
