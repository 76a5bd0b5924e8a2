"""Seed §6.1: watch a run's state while it runs, save it, and resume after a failure.

The writer fails on the first run. The state saved afterwards records Research and Analyze
as completed; ``resume_from`` re-runs only Write and Review and reuses the rest.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from pyagent.orchestrator import Task, Workflow, WorkflowState

calls: list[str] = []
writer_down = True
analyzing = anyio.Event()
go_on = anyio.Event()


def research(topic: str) -> str:
    calls.append("Research")
    return f"notes on {topic}"


async def analyze(notes: str) -> str:
    calls.append("Analyze")
    analyzing.set()
    await go_on.wait()  # hold here so the state can be looked at mid-run
    return f"analysis of {notes}"


def write(analysis: str) -> str:
    calls.append("Write")
    if writer_down:
        raise RuntimeError("writer model unavailable")
    return f"draft from {analysis}"


def review(draft: str) -> str:
    calls.append("Review")
    return f"reviewed {draft}"


workflow = Workflow(name="Research Report", steps=[
    Task(name="Research", agent=research),
    Task(name="Analyze", agent=analyze),
    Task(name="Write", agent=write),
    Task(name="Review", agent=review),
])


async def main() -> None:
    global writer_down
    async with anyio.create_task_group() as tg:
        tg.start_soon(workflow.run, "AI agents")
        await analyzing.wait()
        # Check state (from another task, while the run is going)
        state = workflow.get_state()
        print(state.status)        # "running"
        print(state.current_task)  # "Analyze"
        print(state.completed)     # ["Research"]
        print(state.pending)       # ["Write", "Review"]
        go_on.set()

    state = workflow.get_state()
    print(f"after the run: {state.status}, failed={state.failed}, error={state.error}")

    # Persist state
    path = state.save("workflow_state.json")
    print(f"saved {path} ({path.stat().st_size} bytes, version {WorkflowState.VERSION})")

    # Resume from state (awaited here because we are inside an event loop)
    writer_down = False
    calls.clear()
    result = await workflow.resume_from("workflow_state.json")
    print(f"resumed: {result.status}; agents called this time: {calls}")
    print(f"reused: {[name for name, task in result.tasks.items() if task.reused]}")
    print(f"output: {result.output}")
    Path("workflow_state.json").unlink()


if __name__ == "__main__":
    anyio.run(main)
