"""The graph and the timeline, drawn from definitions and records without a server."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

from pyagent_dashboard import graph, timeline

from pyagent.orchestrator import ConditionalTask, ExecutionPattern, Task, Workflow


def rec(name: str, status: str, start: float | None, end: float | None, **kw: Any) -> Any:
    attempts = kw.pop("attempts", None)
    if attempts is None:
        attempts = [] if start is None else [NS(number=1, agent="a", started_at=start, finished_at=end, error=None)]
    return NS(name=name, status=NS(value=status), started_at=start, finished_at=end, reused=kw.get("reused", False),
              attempts=attempts, fallback_strategy=kw.get("fallback_strategy"), error=kw.get("error"))


def test_a_sequential_workflow_with_a_branch_is_a_chain_through_a_decision() -> None:
    wf = Workflow(name="w", pattern=ExecutionPattern.SEQUENTIAL, steps=[
        Task(name="a", agent=lambda x: x),
        ConditionalTask(name="long?", condition=lambda ctx: True, if_true=Task(name="b", agent=lambda x: x)),
        Task(name="c", agent=lambda x: x)])
    g = graph.from_definition(wf, [rec("a", "completed", 1, 2), rec("b", "completed", 2, 3)])
    assert g.edges == [("start", "a", ""), ("a", "if:long?", ""), ("if:long?", "b", "true"),
                       ("b", "c", ""), ("if:long?", "c", ""), ("c", "end", "")]
    assert g.nodes["a"].status == "completed" and g.nodes["c"].status == "unknown"
    svg = str(graph.draw(g))
    assert svg.count('class="node ') == 6 and 'data-node="if:long?"' in svg


def test_without_the_definition_tasks_that_overlapped_share_a_column() -> None:
    records = [rec("a", "completed", 0.0, 1.0), rec("b", "completed", 1.0, 3.0), rec("c", "failed", 1.5, 2.0),
               rec("d", "completed", 3.0, 4.0), rec("e", "pending", None, None)]
    g = graph.from_records(records, "w")
    assert g.columns == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    assert g.edges == []


def test_labels_are_escaped_in_the_svg() -> None:
    g = graph.from_records([rec("<b onmouseover=x>", "completed", 0.0, 1.0)], "<w>")
    svg = str(graph.draw(g))
    assert "<b onmouseover" not in svg and "&lt;b onmouseover=x&gt;" in svg


def test_the_timeline_tells_retries_fallbacks_reuse_and_running_apart() -> None:
    failed = NS(number=1, agent="primary", started_at=0.0, finished_at=1.0, error="TimeoutError: slow")
    retried = NS(number=2, agent="primary", started_at=1.5, finished_at=2.0, error="TimeoutError: slow")
    backup = NS(number=3, agent="backup", started_at=2.0, finished_at=2.5, error=None)
    run = NS(run_id="r", started_at=0.0, finished_at=None, resumes=[3.0], tasks=[
        rec("answer", "completed", 0.0, 2.5, attempts=[failed, retried, backup], fallback_strategy="substitute"),
        rec("old", "completed", 0.2, 0.4, reused=True),
        rec("now", "running", 3.0, None, attempts=[NS(number=1, agent="a", started_at=3.0, finished_at=None, error=None)]),
        rec("later", "pending", None, None)])
    svg = str(timeline.draw(run, now=4.0))
    outcomes = [part.split('"')[0] for part in svg.split('data-outcome="')[1:]]
    assert outcomes == ["failed", "failed", "fallback", "reused", "running"]
    assert svg.count('class="resume-mark"') == 1 and ">pending<" in svg
