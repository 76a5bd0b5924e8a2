"""The parallel pattern: every step gets the same input and runs concurrently; a reducer merges."""

from __future__ import annotations

import inspect
from typing import Any

import anyio

from pyagent.plugin import (
    ConditionalTask,
    ConfigurationError,
    PyAgentError,
    Task,
    TaskFailedError,
    TaskGroup,
    Workflow,
    WorkflowRun,
    hookimpl,
    large_fanout,
)


class ReducerError(PyAgentError):
    """The workflow's reducer raised while merging branch outputs."""


def _branch_names(step: Any) -> list[str]:
    if isinstance(step, ConditionalTask):
        return [b.name for b in step.branches]
    return [step.name]


def _check_reducer(reducer: Any) -> None:
    """A reducer that cannot take the one dict it is given is refused before any branch runs."""
    if reducer is None:
        return
    try:
        signature = inspect.signature(reducer)
    except (TypeError, ValueError):  # builtins without a signature: find out when called
        return
    try:
        signature.bind({})
    except TypeError:
        name = getattr(reducer, "__name__", type(reducer).__name__)
        raise ConfigurationError(
            f"reducer {name}({', '.join(signature.parameters)}) cannot be called with one argument, the dict of "
            "{task name: output}: give it a single parameter, e.g. def merge(results): ..."
        ) from None


class ParallelPattern:
    """Concurrent branches, bounded by ``max_concurrency``, merged by ``reducer`` in step order.

    ``failure_policy="fail_fast"`` cancels the other branches at the first failure;
    ``"collect"`` lets them finish, reduces the successful outputs and lists failures in
    ``result.errors`` (the run fails only if every branch failed).
    """

    name = "parallel"

    def validate(self, workflow: Workflow) -> None:
        _check_reducer(workflow.reducer)
        for step in workflow.steps:
            if step.dependencies:
                raise ConfigurationError(
                    f"step {step.name!r} of parallel workflow {workflow.name!r} declares dependencies "
                    f"({', '.join(step.dependencies)}): parallel steps are independent; use "
                    "pattern=ExecutionPattern.GRAPH to order them"
                )

    async def execute(self, run: WorkflowRun) -> Any:
        wf = run.workflow
        value = run.input
        collect = wf.failure_policy == "collect"
        run_step = run.run_step
        limiter = anyio.Semaphore(wf.max_concurrency) if wf.max_concurrency else None

        async def branch(step: Any) -> None:
            try:
                if limiter is None:
                    await run_step(step, value)
                else:
                    async with limiter:
                        await run_step(step, value)
            except TaskFailedError:
                if not collect:
                    raise

        with large_fanout(len(wf.steps)):
            async with TaskGroup() as tg:
                if limiter is None and not collect:
                    # Fast path: no wrapper coroutine per branch (matters at 10,000 branches).
                    run_task = run.run_task
                    for step in wf.steps:
                        if type(step) is Task:
                            tg.start_soon(run_task, step, value)
                        else:
                            tg.start_soon(run_step, step, value)
                else:
                    for step in wf.steps:
                        tg.start_soon(branch, step)

        results = run.results
        outputs = {n: results[n] for s in wf.steps for n in _branch_names(s) if n in results}
        if collect and not outputs and run.errors:
            first = next(iter(run.errors.values()))
            raise TaskFailedError("all branches", RuntimeError(f"every branch failed; first: {first}"))
        reducer = wf.reducer
        if reducer is None:
            return outputs
        try:
            merged = reducer(outputs)
            if inspect.isawaitable(merged):
                merged = await merged
        except Exception as exc:
            name = getattr(reducer, "__name__", repr(reducer))
            raise ReducerError(
                f"reducer {name} raised {type(exc).__name__}: {exc} (it is called with a dict of "
                f"{{task name: output}} for tasks {list(outputs)}): fix the reducer"
            ) from exc
        return merged


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("parallel", ParallelPattern())
