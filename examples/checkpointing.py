"""Seed §6.2: checkpoint after each task to SQLite, survive a SIGKILL, resume by run id.

The script starts itself as a child process that runs the workflow and is killed (SIGKILL)
in the middle of the "Publish" task. The parent then resumes the run by its id from
``checkpoints.db``: the three tasks that completed before the kill are not run again.
Checkpoints are encrypted when the ``cryptography`` package is installed (a key is made for
the demo; in production set PYAGENT_STATE_KEY yourself). Needs pyagent-sql for sqlite://.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pyagent.orchestrator import Orchestrator, Task, Workflow

LOG = Path("agent_calls.log")


def step(name: str):  # type: ignore[no-untyped-def]
    def agent(value: str) -> str:
        with LOG.open("a") as fh:
            fh.write(f"{os.getpid()} {name}\n")
        if name == "Publish" and os.environ.get("CRASH_IN_PUBLISH"):
            os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-task
        return f"{value} > {name}"

    agent.__name__ = name.lower()
    return agent


workflow = Workflow(
    name="Long Running Process",
    steps=[Task(name=n, agent=step(n)) for n in ("Extract", "Transform", "Load", "Publish", "Notify")],
    checkpointing={
        "enabled": True,
        "interval": "after_each_task",  # or "every_5_minutes"
        "storage": "sqlite://checkpoints.db",
        "retention": 10,
    },
)


def child(run_id: str) -> None:
    workflow.run_sync("nightly batch", run_id=run_id)


def main() -> None:
    env = dict(os.environ, CRASH_IN_PUBLISH="1")
    try:
        from cryptography.fernet import Fernet

        env["PYAGENT_STATE_KEY"] = os.environ["PYAGENT_STATE_KEY"] = Fernet.generate_key().decode()
        print("checkpoints are encrypted with PYAGENT_STATE_KEY")
    except ImportError:
        print("cryptography not installed: checkpoints are stored as plain JSON")
    run_id = "nightly-2026-01-05"
    LOG.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, __file__, "--child", run_id], env=env)
    print(f"child process ended with signal {-proc.returncode} (SIGKILL={int(signal.SIGKILL)})")
    print("agent calls before the kill:", [line.split()[1] for line in LOG.read_text().splitlines()])

    history = Orchestrator(store="sqlite://checkpoints.db").get_history(workflow="Long Running Process")
    print(f"history says run {history[0].run_id} is {history[0].status} "
          f"({history[0].tasks_completed}/{history[0].tasks_total} tasks)")

    LOG.unlink()
    result = workflow.resume_from(run_id)
    print(f"resumed: {result.status}, output: {result.output!r}")
    print("agent calls after resuming:", [line.split()[1] for line in LOG.read_text().splitlines()])
    print("reused:", [name for name, task in result.tasks.items() if task.reused])
    LOG.unlink()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
