"""Workflows whose real runs the dashboard tests record, and show (also loaded by `--workflows`).

Every pattern the graph draws: a sequential chain, a parallel fan-out, a dependency graph with a
conditional branch and a nested workflow; and what the timeline distinguishes: a retried task,
a fallback, a failure (and its traceback), a run resumed after a failure. The store comes from
``PYAGENT_DASHBOARD_TEST_STORE`` (the tests set it before loading this file).
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from pyagent.orchestrator import (
    ConditionalTask,
    ExecutionPattern,
    Orchestrator,
    RetryConfig,
    Task,
    Workflow,
)

STORE = os.environ.get("PYAGENT_DASHBOARD_TEST_STORE", "sqlite://dashboard-flows.db")
CHECKPOINTS = {"storage": STORE}
XSS = "<script>window.__xss = 'ran'</script><img src=x onerror=\"window.__xss='img'\">"
SWITCH = {"ledger_down": True}
HANG = {"started": None}


def research(topic: Any) -> str:
    return f"notes on {topic['topic'] if isinstance(topic, dict) else topic}"


report = Workflow(name="report", pattern=ExecutionPattern.SEQUENTIAL, checkpointing=CHECKPOINTS, steps=[
    Task(name="research", agent=research),
    Task(name="write", agent=lambda notes: f"{XSS} article from {notes} " + "lorem ipsum " * 80),
])

fanout = Workflow(name="fanout", pattern=ExecutionPattern.PARALLEL, checkpointing=CHECKPOINTS, steps=[
    Task(name="news", agent=lambda q: f"news about {q}"),
    Task(name="papers", agent=lambda q: f"papers about {q}"),
    Task(name="forums", agent=lambda q: f"forum posts about {q}"),
])

summarise = Workflow(name="summarise", steps=[
    Task(name="outline", agent=lambda text: f"outline of {text}"),
    Task(name="condense", agent=lambda outline: f"summary: {outline}"),
])

pipeline = Workflow(name="pipeline", pattern=ExecutionPattern.GRAPH, checkpointing=CHECKPOINTS, steps=[
    Task(name="fetch", agent=lambda x: f"data for {x}"),
    Task(name="clean", agent=lambda x: "cleaned data", dependencies=["fetch"]),
    ConditionalTask(name="big enough?", condition=lambda ctx: True, dependencies=["clean"],
                    if_true=Task(name="deep analysis", agent=lambda x: "deep"),
                    if_false=Task(name="quick look", agent=lambda x: "quick")),
    Task(name="summary", agent=summarise, dependencies=["big enough?"]),
])

_calls = {"flaky": 0}


def flaky_fetch(x: Any) -> str:
    _calls["flaky"] += 1
    if _calls["flaky"] % 2 == 1:
        raise TimeoutError("the rates service timed out")
    return f"rates for {x}"


flaky = Workflow(name="flaky", checkpointing=CHECKPOINTS, steps=[
    Task(name="fetch rates", agent=flaky_fetch, retry_config=RetryConfig(max_retries=2, initial_delay=0.05)),
    Task(name="convert", agent=lambda rates: f"converted {rates}"),
])


def primary_model(x: Any) -> str:
    raise ConnectionError("primary model unreachable")


fallback = Workflow(name="fallback", checkpointing=CHECKPOINTS, steps=[
    Task(name="answer", agent=primary_model, fallback_agent=lambda x: f"backup answer to {x}"),
])


def read_total(invoice: Any) -> float:
    # Markup in an error's text: its traceback on the run's page shows it as text.
    raise ArithmeticError(f"the total is below zero in the note {XSS}")


def check_invoice(invoice: Any) -> str:
    try:
        return str(read_total(invoice))
    except ArithmeticError as exc:
        raise ValueError("the invoice total is negative: -12.50") from exc


broken = Workflow(name="broken", checkpointing=CHECKPOINTS, steps=[
    Task(name="load", agent=lambda x: {"invoice": x}),
    Task(name="check", agent=check_invoice),
])


def post_ledger(x: Any) -> str:
    if SWITCH["ledger_down"]:
        raise ConnectionError("ledger service is down")
    return f"posted {x}"


ledger = Workflow(name="ledger", checkpointing=CHECKPOINTS, steps=[
    Task(name="prepare", agent=lambda x: f"entries for {x}"),
    Task(name="post", agent=post_ledger),
    Task(name="confirm", agent=lambda x: f"confirmed: {x}"),
])


async def wait_forever(x: Any) -> None:
    started = HANG["started"]
    if started is not None:
        started.set()
    await anyio.sleep_forever()


long_job = Workflow(name="long job", checkpointing=CHECKPOINTS, steps=[
    Task(name="warm up", agent=lambda x: "warm"),
    Task(name="crunch", agent=wait_forever),
])

bulk = Workflow(name="bulk", checkpointing=CHECKPOINTS, steps=[
    Task(name="step", agent=lambda n: 1 // (n % 5) if isinstance(n, int) else n),
])

orchestrator = Orchestrator(store=STORE)
for _wf in (report, fanout, pipeline, flaky, fallback, broken, ledger, long_job, bulk):
    orchestrator.add_workflow(_wf)


async def record_runs() -> dict[str, str]:
    """Record one run of each workflow, and 25 of ``bulk`` (every fifth fails); their run ids by name."""
    ids = {}
    for n in range(25):
        await orchestrator.run_workflow(bulk, n, run_id=f"bulk-{n:02d}")
    inputs = {
        "report": {"topic": "AI", "api_key": "sk-live-123456", "auth": {"password": "hunter2", "user": "ada"}},
        "fanout": "agents", "pipeline": "orders", "flaky": "EUR", "fallback": "what is 2+2?",
        "broken": {"total": -12.5}, "ledger": "invoice 42",
    }
    for name, value in inputs.items():
        result = await orchestrator.run_workflow(name, value, run_id=f"{name}-1")
        ids[name] = result.run_id
    return ids
