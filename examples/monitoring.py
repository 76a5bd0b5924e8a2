"""Seed §8.2: real-time monitoring with all four monitors at once.

- ``ConsoleMonitor()`` draws a live view on a terminal (plain lines when output goes to a file);
- ``SlackMonitor(webhook_url=...)`` posts Block Kit messages for failed runs: here to a
  loopback webhook started by this example, which prints what Slack would receive;
- ``PrometheusMonitor(port=0)`` serves ``/metrics`` on a free port (9090 in the seed);
- ``OpenTelemetryMonitor(tracer_provider=...)`` records GenAI spans; here into memory, and
  the trace is printed as a tree at the end.

Needs pyagent-console, pyagent-slack, pyagent-prometheus and pyagent-otel (and a pattern plugin).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyagent.monitors import ConsoleMonitor, OpenTelemetryMonitor, PrometheusMonitor, SlackMonitor
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow

# -- a loopback stand-in for Slack's incoming webhook --------------------------------------

received: list[dict[str, Any]] = []


class Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


slack_server = HTTPServer(("127.0.0.1", 0), Webhook)
threading.Thread(target=slack_server.serve_forever, daemon=True).start()

# -- the workflows ---------------------------------------------------------------------------

attempts = {"search": 0}


def search(topic: str) -> str:
    attempts["search"] += 1
    if attempts["search"] == 1:
        raise ConnectionError("search API timed out")  # retried once
    return f"notes on {topic}"


def summarize(notes: str, ctx: Any) -> str:
    ctx.run.record_handoff("summarizer", "editor", "needs a second pair of eyes")
    return f"summary of {notes}"


def publish(summary: str) -> str:
    raise RuntimeError("CMS rejected the post")


research = Workflow(name="Research Report", steps=[
    Task(name="Search", agent=search, retry_config=RetryConfig(max_retries=2, initial_delay=0.01)),
    Task(name="Summarize", agent=summarize),
])
publishing = Workflow(name="Publish", steps=[Task(name="Post", agent=publish)])

# -- the monitors (seed §8.2) ----------------------------------------------------------------

spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))

orchestrator = Orchestrator()
orchestrator.set_monitors([
    ConsoleMonitor(),  # Print to console
    SlackMonitor(webhook_url=f"http://127.0.0.1:{slack_server.server_port}/hooks/T000/B000/demo",
                 group_wait=0.1, link="https://ops.example/runs/{run_id}"),  # Slack notifications
    PrometheusMonitor(port=0),  # Metrics endpoint
    OpenTelemetryMonitor(tracer_provider=tracer_provider),  # Traces
])
orchestrator.add_workflow(research)
orchestrator.add_workflow(publishing)


async def main() -> None:
    ok = await orchestrator.run_workflow("Research Report", "agent frameworks")
    failed = await orchestrator.run_workflow("Publish", ok.output)
    print(f"\nresults: {ok.status.value}, {failed.status.value}")


anyio.run(main)
console, slack, prometheus, otel = orchestrator.monitors

slack.flush(5)
print("\nSlack received:")
for message in received:
    print("  ", message["text"])

print(f"\nPrometheus at {prometheus.url}:")
with urllib.request.urlopen(prometheus.url) as response:
    for line in response.read().decode().splitlines():
        if line.startswith(("pyagent_runs_total", "pyagent_tasks_total", "pyagent_task_retries_total",
                            "pyagent_handoffs_total")):
            print("  ", line)

print("\nTrace:")
finished = spans.get_finished_spans()
children: dict[Any, list[Any]] = {}
for span in finished:
    children.setdefault(span.parent.span_id if span.parent else None, []).append(span)


def show(parent: Any, depth: int) -> None:
    for span in sorted(children.get(parent, []), key=lambda s: s.start_time):
        status = "error" if span.status.status_code.name == "ERROR" else "ok"
        events = ", ".join(e.name for e in span.events)
        print(f"   {'  ' * depth}{span.name} [{status}]" + (f" events: {events}" if events else ""))
        show(span.context.span_id, depth + 1)


show(None, 0)
for monitor in orchestrator.monitors:
    monitor.close()
slack_server.shutdown()
