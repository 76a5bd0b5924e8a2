"""The graph pattern: each task starts as soon as every task it depends on has completed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from pyagent.plugin import (
    ConditionalTask,
    ConfigurationError,
    TaskFailedError,
    TaskGroup,
    TaskStatus,
    Workflow,
    WorkflowRun,
    cancels_unstarted_children,
    find_cycle,
    hookimpl,
    large_fanout,
)

_COMPLETED = TaskStatus.COMPLETED


def _aliases(workflow: Workflow) -> dict[str, str]:
    """Branch task name → the conditional step that runs it (a dependency on a branch waits for it)."""
    return {b.name: s.name for s in workflow.steps if isinstance(s, ConditionalTask) for b in s.branches}


class GraphPattern:
    """Dependency-driven scheduling.

    A task's input is the workflow input when it has no dependencies, its dependency's output
    when it has one, and ``{dependency name: output}`` when it has several. A task whose
    dependency was skipped (a conditional branch not taken) or failed under
    ``failure_policy="collect"`` is skipped. The output is the single sink's output, or
    ``{sink name: output}`` when several tasks have no dependents.
    """

    name = "graph"

    def validate(self, workflow: Workflow) -> None:
        if workflow.reducer is not None:
            raise ConfigurationError(
                f"workflow {workflow.name!r} runs as a graph, but reducer= only applies to the "
                "parallel pattern: remove it and add a final task that depends on the tasks to merge "
                "(it receives {dependency name: output})"
            )
        alias = _aliases(workflow)
        deps = {s.name: [alias.get(d, d) for d in s.dependencies] for s in workflow.steps}
        for name, ds in deps.items():
            if name in ds:
                raise ConfigurationError(
                    f"task {name!r} depends on one of its own conditional branches in workflow "
                    f"{workflow.name!r}: remove that dependency"
                )
        cycle = find_cycle(deps)
        if cycle:
            raise ConfigurationError(
                f"dependency cycle in workflow {workflow.name!r}: {' -> '.join(cycle)}: remove one of these dependencies"
            )

    async def execute(self, run: WorkflowRun) -> Any:
        wf = run.workflow
        steps = {s.name: s for s in wf.steps}
        alias = _aliases(wf)
        waiting = {n: {alias.get(d, d) for d in s.dependencies} for n, s in steps.items()}
        waited_on = {n: bool(ds) for n, ds in waiting.items()}
        late_start_check = not cancels_unstarted_children()
        dependents: dict[str, list[str]] = defaultdict(list)
        for n, ds in waiting.items():
            for d in ds:
                dependents[d].append(n)
        outputs: dict[str, Any] = {}
        blocked: dict[str, str] = {}  # step → why its dependents must be skipped
        collect = wf.failure_policy == "collect"
        limiter = anyio.Semaphore(wf.max_concurrency) if wf.max_concurrency else None

        def why_blocked(step: Any) -> str | None:
            for d in step.dependencies:
                owner = alias.get(d, d)
                if owner in blocked:
                    return f"dependency {owner!r} {blocked[owner]}"
                if d != owner:  # depends on a specific branch: it must be the one that ran
                    rec = run.records.get(d)
                    if rec is None or rec.status is not _COMPLETED:
                        return f"branch {d!r} of {owner!r} did not run"
            return None

        async def node(name: str) -> None:
            step = steps[name]
            if late_start_check and waited_on[name]:
                # Started by a dependency that finished as a sibling failed: on trio a task
                # started in a cancelled group runs until its first checkpoint, and a function
                # agent may have none, so look before running anything.
                await checkpoint_if_cancelled()
            reason = why_blocked(step)
            if reason is not None:
                run.skip(step, reason)
                blocked[name] = "was skipped"
            else:
                deps = step.dependencies
                if not deps:
                    value = run.input
                elif len(deps) == 1:
                    value = _output(deps[0])
                else:
                    value = {d: _output(d) for d in deps}
                try:
                    if limiter is None:
                        rec = await run.run_step(step, value)
                    else:
                        async with limiter:
                            rec = await run.run_step(step, value)
                except TaskFailedError:
                    if not collect:
                        raise
                    blocked[name] = "failed"
                else:
                    if rec.status is _COMPLETED:
                        outputs[name] = rec.output
                    elif rec.status is TaskStatus.SKIPPED:
                        blocked[name] = "was skipped"
                    else:  # failed with continue_on_error: dependents still run, seeing None
                        outputs[name] = None
            for child in dependents[name]:
                pending = waiting[child]
                pending.discard(name)
                if not pending:
                    tg.start_soon(node, child)

        def _output(dep: str) -> Any:
            owner = alias.get(dep, dep)
            return outputs.get(owner)

        with large_fanout(len(wf.steps)):
            async with TaskGroup() as tg:
                for name, pending in waiting.items():
                    if not pending:
                        tg.start_soon(node, name)

        sinks = [n for n in steps if not dependents[n]]
        if collect and not outputs and run.errors:
            first = next(iter(run.errors.values()))
            raise TaskFailedError("all tasks", RuntimeError(f"every task failed or was skipped; first: {first}"))
        finished = [n for n in sinks if n in outputs]
        if len(sinks) == 1:
            return outputs.get(sinks[0])
        return {n: outputs[n] for n in finished}


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("graph", GraphPattern())
