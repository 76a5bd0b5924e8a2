"""Failover time: from SIGKILL of the replica running a run to the resumed run's next task starting.

Two real ``pyagent serve`` replicas share one store (SQLite here; PostgreSQL too when
``PYAGENT_TEST_POSTGRES_URL`` is set) with the default lease (15 s, renewed every 5 s) and the
default poll interval (0.5 s). Each replica has an owner id of its own, as on two machines
(on one machine a replica that starts after another died takes its runs over at once; a
running one waits for the lease, as across machines). A webhook starts a three-task run; while
its second task runs, the replica running it is killed; the figure is the time from the kill to
that task starting again in the other replica. Completed tasks must not run again.

Standalone: ``python benchmarks/bench_failover.py`` (needs pyagent-webhooks and pyagent-sql).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

TRIALS = 3
FLOWS = r'''
import json, os, time
from pathlib import Path
from pyagent.orchestrator import Orchestrator, Task, Workflow

LOG = Path(os.environ["FAILOVER_LOG"])

def step(name, seconds):
    def run(x):
        with LOG.open("a") as fh:
            fh.write(json.dumps({"task": name, "pid": os.getpid(), "at": time.time()}) + "\n")
        time.sleep(seconds)
        return x
    return run

long = Workflow(name="long", steps=[Task(name="first", agent=step("first", 0.1)),
                                    Task(name="second", agent=step("second", 60)),
                                    Task(name="third", agent=step("third", 0.1))])
orchestrator = Orchestrator()
orchestrator.on_webhook("/start", workflow=long)
'''
LISTENING = re.compile(r"webhooks listening on (http://127\.0\.0\.1:\d+)")


def replica(folder: Path, storage: str, name: str, log: Path) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "PYAGENT_OWNER_ID": name, "FAILOVER_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "serve", "flows.py", "--port", "0",
                             "--storage", storage], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    urls: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = LISTENING.search(line)
            if found:
                urls.append(found.group(1))

    threading.Thread(target=read, daemon=True).start()
    return proc, urls


def starts(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def trial(storage: str, folder: Path, n: int) -> float:
    log = folder / f"starts-{n}.jsonl"
    procs = [replica(folder, storage, f"replica-{n}-{i}", log) for i in range(2)]
    try:
        for _, urls in procs:
            wait(lambda u=urls: u, 60, "a replica to listen")
        request = urllib.request.Request(f"{procs[0][1][0]}/start", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
        second = wait(lambda: [s for s in starts(log) if s["task"] == "second"], 30, "the second task")[0]
        holder = next(p for p, _ in procs if p.pid == second["pid"])
        time.sleep(0.5)  # well into the task, as a crash would be
        killed_at = time.time()
        holder.send_signal(signal.SIGKILL)
        again = wait(lambda: [s for s in starts(log) if s["task"] == "second" and s["pid"] != holder.pid],
                     60, "the run to be resumed")[0]
        firsts = [s for s in starts(log) if s["task"] == "first"]
        if len(firsts) != 1:
            raise SystemExit(f"a completed task ran {len(firsts)} times")
        return float(again["at"]) - killed_at  # type: ignore[arg-type]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def main() -> int:
    stores = {"SQLite": None}
    pg = os.environ.get("PYAGENT_TEST_POSTGRES_URL")
    if pg:
        stores["PostgreSQL"] = pg
    print(f"failover: SIGKILL of the replica running a run -> that task starting again in another "
          f"replica; 2 replicas, default lease (15 s) and poll interval (0.5 s), {TRIALS} trials")
    for label, url in stores.items():
        times = []
        for n in range(TRIALS):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                (folder / "flows.py").write_text(FLOWS)
                if url is None:
                    storage = f"sqlite:///{folder / 'runs.db'}"
                else:
                    schema = f"bench_failover_{os.getpid()}_{n}"
                    storage = f"{url}{'&' if '?' in url else '?'}schema={schema}"
                times.append(trial(storage, folder, n))
                if url is not None:
                    subprocess.run(["psql", url, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                                   check=False, capture_output=True)
        print(f"  {label:<11} median {statistics.median(times):5.2f} s  (min {min(times):.2f}, "
              f"max {max(times):.2f}); completed tasks re-run: 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
