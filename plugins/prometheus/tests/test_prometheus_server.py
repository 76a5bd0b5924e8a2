"""End to end: a real Prometheus server scrapes a running workflow process; PromQL counts its runs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

RUNS = 7

WORKER = textwrap.dedent(f"""
    import sys, anyio
    from pyagent.orchestrator import Orchestrator, Task, Workflow
    from pyagent.plugins import get_runtime
    from pyagent.testing import PassForward
    from pyagent.monitors import PrometheusMonitor

    get_runtime().register(PassForward.plugin(), "pass-forward")
    monitor = PrometheusMonitor(port=int(sys.argv[1]))
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="e2e", steps=[Task(name="a", agent=lambda x: x), Task(name="b", agent=lambda x: x)]))

    async def main():
        for _ in range({RUNS}):
            await orch.run_workflow("e2e")
        print("ran", {RUNS}, flush=True)
        await anyio.sleep_forever()

    anyio.run(main)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_a_workflow_process_and_promql_counts_its_runs(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Prometheus server is not installed (Debian package 'prometheus'; "
                    "`nox -s plugin(name='prometheus')` and `nox -s all` install it)")
    target, server_port = free_port(), free_port()
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "prometheus.yml").write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
        scrape_configs:
          - job_name: pyagent
            static_configs:
              - targets: ["127.0.0.1:{target}"]
    """))
    worker = subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(target)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = None
    try:
        assert worker.stdout is not None
        lines = []
        for line in worker.stdout:  # plugin-discovery warnings may come first
            lines.append(line)
            if line.startswith("ran "):
                break
        assert lines and lines[-1].strip() == f"ran {RUNS}", "".join(lines)
        server = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{server_port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
        deadline = time.monotonic() + 90
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                result = query(server_port, 'sum(pyagent_runs_total{workflow="e2e",status="completed"})')
            except OSError:
                result = []
            if result:
                break
            time.sleep(0.5)
        assert result, "Prometheus never scraped the workflow process"
        assert float(result[0]["value"][1]) == RUNS
        tasks = query(server_port, 'sum(pyagent_tasks_total{workflow="e2e"})')
        assert float(tasks[0]["value"][1]) == 2 * RUNS
        up = query(server_port, 'up{job="pyagent"}')
        assert up[0]["value"][1] == "1"
    finally:
        for proc in (server, worker):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
