"""One owner per run: a run going on in one process cannot be resumed by another at the same time.

The script starts itself as a child process that runs a checkpointed workflow whose "Publish"
step takes a few seconds. While the child runs it, the parent tries to resume the same run id
and is refused with RunOwnedError, which names the owner. Then it resumes with ``wait=True``:
it waits until the child is done and finds nothing left to run. Needs pyagent-sql for sqlite://.
"""

from __future__ import annotations

import subprocess
import sys
import time

from pyagent import RunOwnedError
from pyagent.orchestrator import Task, Workflow


def step(name: str, seconds: float = 0.0):  # type: ignore[no-untyped-def]
    def agent(value: str) -> str:
        time.sleep(seconds)
        return f"{value} > {name}"

    agent.__name__ = name.lower()
    return agent


workflow = Workflow(
    name="Nightly Report",
    steps=[Task(name="Extract", agent=step("Extract")), Task(name="Publish", agent=step("Publish", 3.0)),
           Task(name="Notify", agent=step("Notify"))],
    checkpointing={"storage": "sqlite://checkpoints.db"},
)


def child(run_id: str) -> None:
    def announce(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "task.started" and event.task == "Publish":
            print("publishing", flush=True)

    workflow.run_sync("nightly batch", run_id=run_id, on_event=announce)


def main() -> None:
    run_id = f"nightly-{int(time.time())}"
    proc = subprocess.Popen([sys.executable, __file__, "--child", run_id], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    print("child says:", proc.stdout.readline().strip())  # the child's run is in "Publish"

    try:
        workflow.resume_from(run_id)
    except RunOwnedError as exc:
        print(f"resume refused: the run is owned by {exc.owner}")

    result = workflow.resume_from(run_id, wait=True, wait_timeout=60)
    proc.wait()
    print(f"after waiting: {result.status}, output: {result.output!r}")
    print("reused:", [name for name, task in result.tasks.items() if task.reused])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
