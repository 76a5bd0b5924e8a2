"""Per-task cost of each monitor on the 1,000-task chain, over the same chain with no monitor.

Each monitor watches one orchestrator running a 1,000-task sequential chain of no-op function
agents; the best run time with the monitor minus the best without it, divided by the tasks,
is its overhead per task (best of REPEATS, as timeit does: the machine is shared, and other
processes only ever add time). Configurations are measured in turns, so drift in the
machine's load falls on all of them alike; medians are printed as well. Targets: console not on a terminal <= 5 µs,
Prometheus <= 5 µs, OpenTelemetry tracing <= 30 µs, Slack with nothing to send <= 1 µs.

Prometheus records durations into its histograms when scraped; the endpoint is scraped after
every run (outside the timing), and the time that recording takes is printed too, per task.
"engine floor" is a monitor that does nothing: what building and delivering the events costs.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import anyio

from pyagent.orchestrator import ExecutionPattern, Orchestrator, Task, Workflow

N = 1000
REPEATS = 40


def noop(x: int) -> int:
    return x


def chain() -> Workflow:
    return Workflow(name="chain", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i}", agent=noop) for i in range(N)])


def monitors() -> dict[str, tuple[Any, float]]:
    """name -> (monitor or None, target µs/task)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from pyagent.monitors import (
        ConsoleMonitor,
        OpenTelemetryMonitor,
        PrometheusMonitor,
        SlackMonitor,
    )

    class Discard(SpanExporter):
        """Exports by dropping: the cost measured is pyagent's and the SDK's, not a network's."""

        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Nothing:
        def on_event(self, event: Any) -> None:
            pass

    batched = TracerProvider()
    batched.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    simple = TracerProvider()
    simple.add_span_processor(SimpleSpanProcessor(Discard()))
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115 - closed in main()
    return {
        "none": (None, 0.0),
        "engine floor": (Nothing(), float("inf")),
        "console (not a terminal)": (ConsoleMonitor(file=log), 5.0),
        "prometheus": (PrometheusMonitor(port=0), 5.0),
        "opentelemetry tracing": (OpenTelemetryMonitor(tracer_provider=simple), 30.0),
        "  ... with a batch processor": (OpenTelemetryMonitor(tracer_provider=batched), float("inf")),
        "slack (nothing to send)": (SlackMonitor(webhook_url="http://127.0.0.1:9/hooks/never"), 1.0),
    }


async def measure(configs: dict[str, tuple[Any, float]]) -> tuple[dict[str, list[float]], float]:
    runs: dict[str, Callable[[], Any]] = {}
    for name, (monitor, _) in configs.items():
        orch = Orchestrator(monitors=[] if monitor is None else [monitor])
        orch.add_workflow(chain())
        runs[name] = lambda orch=orch: orch.run_workflow("chain", 0)
    prometheus = configs["prometheus"][0]
    fold = prometheus._endpoint.fold
    times: dict[str, list[float]] = {name: [] for name in runs}
    recording: list[float] = []
    for name in runs:  # warm up
        await runs[name]()
    await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(prometheus.url).read())
    for _ in range(REPEATS):
        for name, go in runs.items():
            started = time.perf_counter()
            await go()
            times[name].append(time.perf_counter() - started)
            if name == "prometheus":  # what a scrape then spends recording this run's durations
                started = time.perf_counter()
                fold.flush()
                recording.append(time.perf_counter() - started)
    return times, statistics.median(recording)


def main() -> None:
    configs = monitors()
    try:
        for backend in ("asyncio", "trio"):
            times, recording = anyio.run(measure, configs, backend=backend)
            best, base_median = min(times["none"]), statistics.median(times["none"])
            print(f"[{backend}] 1,000-task chain, no monitor: {best * 1e3:.2f} ms (best of {REPEATS})")
            for name, (_, target) in configs.items():
                if name == "none":
                    continue
                over = (min(times[name]) - best) / N * 1e6
                median = (statistics.median(times[name]) - base_median) / N * 1e6
                verdict = "" if target == float("inf") else (
                    f" — {'meets' if over <= target else 'MISSES'} target <= {target:g} µs")
                extra = ""
                if name == "prometheus":
                    extra = f"; recording the durations at scrape: {recording / N * 1e6:.2f} µs/task more"
                print(f"  {name:<30} {over:6.2f} µs/task (median {median:6.2f}){verdict}{extra}")
    finally:
        for monitor, _ in configs.values():
            close = getattr(monitor, "close", None)
            if close is not None:
                close()
        log = configs["console (not a terminal)"][0].console.file
        log.close()
        os.unlink(log.name)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
