"""PrometheusMonitor: the endpoint scraped over HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyagent_prometheus import PrometheusMonitor

from pyagent import ConfigurationError
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow
from pyagent.plugins import Runtime


def scrape(monitor: PrometheusMonitor) -> str:
    with urllib.request.urlopen(monitor.url, timeout=10) as response:
        return str(response.read().decode())


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    matching = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, f"{name}{labels}: {found.get(name)}"
    return float(matching[0])


@pytest.fixture
def monitor() -> Any:
    m = PrometheusMonitor(port=0)
    yield m
    m.close()


def research_workflow() -> Workflow:
    state = {"flaky": 0}

    def flaky(x: Any) -> Any:
        state["flaky"] += 1
        if state["flaky"] % 2:
            raise ConnectionError("try again")
        return x

    def down(x: Any) -> Any:
        raise RuntimeError("primary down")

    def delegating(x: Any, ctx: Any) -> Any:
        ctx.run.record_handoff("writer", "reviewer", "needs review")
        ctx.run.emit("model.usage", ctx.task.name, agent="writer", model="gpt-test", input_tokens=120,
                     output_tokens=30)
        return x

    return Workflow(name="Research Report", steps=[
        Task(name="Research", agent=flaky, retry_config=RetryConfig(max_retries=2, initial_delay=0)),
        Task(name="Write", agent=down, fallback_agent=lambda x: f"{x} (backup)"),
        Task(name="Review", agent=delegating),
    ])


def test_every_metric_of_the_catalogue_from_real_runs(chain_runtime: Runtime, monitor: PrometheusMonitor) -> None:
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(research_workflow())

    def boom(x: Any) -> Any:
        raise RuntimeError("no")

    orch.add_workflow(Workflow(name="Guarded", steps=[Task(name="t", agent=boom)],
                               circuit_breaker={"failure_threshold": 2, "reset_timeout": 600}))

    async def go() -> None:
        for _ in range(3):
            await orch.run_workflow("Research Report", "topic")
        for _ in range(3):
            await orch.run_workflow("Guarded")

    anyio.run(go)
    text = scrape(monitor)
    found = samples(text)
    assert value(found, "pyagent_runs_total", workflow="Research Report", status="completed") == 3
    assert value(found, "pyagent_runs_total", workflow="Guarded", status="failed") == 3  # 2 + 1 refused
    assert value(found, "pyagent_run_duration_seconds_count", workflow="Research Report") == 3
    buckets = [lab["le"] for lab, _ in found["pyagent_run_duration_seconds_bucket"] if lab["workflow"] == "Guarded"]
    assert buckets[0] == "0.005" and buckets[-2] == "3600.0" and buckets[-1] == "+Inf"
    assert value(found, "pyagent_runs_in_progress", workflow="Research Report") == 0
    assert value(found, "pyagent_tasks_total", workflow="Research Report", task="Write", status="completed") == 3
    assert value(found, "pyagent_tasks_total", workflow="Guarded", task="t", status="failed") == 2
    assert value(found, "pyagent_task_duration_seconds_count", workflow="Research Report", task="Review") == 3
    assert value(found, "pyagent_task_retries_total", workflow="Research Report", task="Research") == 3
    assert value(found, "pyagent_fallbacks_total", workflow="Research Report", task="Write") == 3
    assert value(found, "pyagent_handoffs_total", from_agent="writer", to_agent="reviewer") == 3
    assert value(found, "pyagent_circuit_state", workflow="Guarded") == 1  # open
    assert value(found, "pyagent_llm_tokens_total", model="gpt-test", kind="input") == 360
    assert value(found, "pyagent_llm_tokens_total", model="gpt-test", kind="output") == 90
    # Never a run id or an input as a label.
    labels = {k for family in found.values() for lab, _ in family for k in lab}
    assert labels <= {"workflow", "status", "task", "from_agent", "to_agent", "model", "kind", "le",
                      "service_name", "service_instance_id", "telemetry_sdk_language", "telemetry_sdk_name",
                      "telemetry_sdk_version"}
    assert "topic" not in text


def test_promtool_check_metrics_is_clean(chain_runtime: Runtime, monitor: PrometheusMonitor) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; the nox session installs it)")
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(research_workflow())
    anyio.run(orch.run_workflow, "Research Report", "x")
    checked = subprocess.run([promtool, "check", "metrics"], input=scrape(monitor), capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0 and checked.stdout.strip() == "" and checked.stderr.strip() == "", checked


def test_runs_in_progress_while_running(chain_runtime: Runtime, monitor: PrometheusMonitor) -> None:
    seen: dict[str, float] = {}

    async def look(x: Any) -> Any:
        text = await anyio.to_thread.run_sync(scrape, monitor)
        seen["in_progress"] = value(samples(text), "pyagent_runs_in_progress", workflow="live")
        return x

    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="live", steps=[Task(name="look", agent=look)]))
    anyio.run(orch.run_workflow, "live")
    assert seen["in_progress"] == 1
    assert value(samples(scrape(monitor)), "pyagent_runs_in_progress", workflow="live") == 0


def test_several_orchestrators_share_one_endpoint(chain_runtime: Runtime) -> None:
    first = PrometheusMonitor(port=0)
    second = PrometheusMonitor(port=first.port)  # the same endpoint, no duplicate-metric error
    try:
        a, b = Orchestrator(monitors=[first]), Orchestrator(monitors=[second])
        a.add_workflow(Workflow(name="A", steps=[Task(name="t", agent=lambda x: x)]))
        b.add_workflow(Workflow(name="B", steps=[Task(name="t", agent=lambda x: x)]))
        both = Orchestrator(monitors=[first, second])  # attached twice to the same runs: counted once
        both.add_workflow(Workflow(name="C", steps=[Task(name="t", agent=lambda x: x)]))

        async def go() -> None:
            await a.run_workflow("A")
            await b.run_workflow("B")
            await both.run_workflow("C")

        anyio.run(go)
        found = samples(scrape(first))
        for name in ("A", "B", "C"):
            assert value(found, "pyagent_runs_total", workflow=name, status="completed") == 1
        other = PrometheusMonitor(port=0)  # another endpoint in the same process: its own registry
        try:
            assert "pyagent_runs_total{" not in scrape(other)
        finally:
            other.close()
        first.close()
        assert scrape(second)  # still served while a monitor uses it
    finally:
        second.close()
    with pytest.raises(OSError):
        scrape(second)


def test_a_port_in_use_is_a_clear_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ConfigurationError, match=f"cannot serve on 127.0.0.1:{port}: the port is already in use"):
            PrometheusMonitor(port=port)
    finally:
        holder.close()
    with pytest.raises(ConfigurationError, match="port must be a whole number"):
        PrometheusMonitor(port="9090")  # type: ignore[arg-type]


def test_a_port_this_process_serves_on_another_host_says_so() -> None:
    first = PrometheusMonitor(port=0, host="127.0.0.1")
    try:
        with pytest.raises(ConfigurationError, match=(
                f"a PrometheusMonitor in this process already serves port {first.port} on 127.0.0.1: "
                "give the same host to share its endpoint")):
            PrometheusMonitor(port=first.port, host="0.0.0.0")
    finally:
        first.close()


def test_by_name_and_by_class(chain_runtime: Runtime) -> None:
    from pyagent.monitors import PrometheusMonitor as ByClass
    from pyagent.monitors import create

    assert ByClass is PrometheusMonitor
    made = create("prometheus", port=0)
    try:
        assert isinstance(made, PrometheusMonitor) and made.port > 0
    finally:
        made.close()
