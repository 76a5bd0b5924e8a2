"""The ``pyagent`` command line."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from pyagent.plugins import get_runtime


@click.group()
@click.version_option(package_name="pyagent-kernel")
def main() -> None:
    """Orchestrate multi-agent workflows."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins, what each provides, and plugins that failed to load."""
    rt = get_runtime()
    infos = list(rt.iter_plugins())
    drivers = {kind: rt.driver_names(kind) for kind in ("stores", "executors")}
    if as_json:
        click.echo(json.dumps({
            "plugins": [
                {"name": p.name, "distribution": p.distribution, "version": p.version, "provides": p.provides}
                for p in infos
            ],
            "drivers": drivers,
            "failures": [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in rt.failures],
        }, indent=2))
        return
    if not infos:
        click.echo("No plugins installed. Install patterns with e.g.: pip install pyagent-sequential")
    for p in infos:
        dist = f"{p.distribution} {p.version}" if p.distribution else "registered in-process"
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(p.provides.items()))
        click.echo(f"{p.name:<16} {dist:<32} {provides or '(observes events)'}")
    for kind, names in drivers.items():
        click.echo(f"{kind + ' (drivers)':<16} {', '.join(names) or 'none'}")
    if rt.failures:
        click.echo("\nFailed to load:")
        for f in rt.failures:
            click.echo(f"  {f.name} ({f.distribution or 'unknown distribution'}): {f.error}", err=False)


def _load_module(path: Path) -> Any:
    if not path.exists():
        raise click.ClickException(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"pyagent_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise click.ClickException(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


def _find_workflow(module: Any, wanted: str | None, path: Path) -> Any:
    from pyagent.workflow import Workflow

    found = {name: v for name, v in vars(module).items() if isinstance(v, Workflow)}
    if wanted is not None:
        if wanted in found:
            return found[wanted]
        for wf in found.values():
            if wf.name == wanted:
                return wf
        have = ", ".join(f"{k} ({v.name!r})" for k, v in found.items()) or "none"
        raise click.ClickException(f"{path} has no workflow {wanted!r} (workflows: {have})")
    if len(found) == 1:
        return next(iter(found.values()))
    # Several: run the one no other workflow uses as a step (the top of a composition).
    used = {id(getattr(t.agent, "workflow", None)) for wf in found.values() for t in _tasks(wf)}
    roots = [wf for wf in found.values() if id(wf) not in used]
    if len(roots) == 1:
        return roots[0]
    if not found:
        raise click.ClickException(f"{path} defines no Workflow at module level")
    names = ", ".join(found)
    raise click.ClickException(f"{path} defines several workflows ({names}): pick one with {path}:NAME")


def _tasks(workflow: Any) -> list[Any]:
    from pyagent.model.tasks import ConditionalTask

    out: list[Any] = []
    for step in workflow.steps:
        out.extend(step.branches if isinstance(step, ConditionalTask) else [step])
    return out


_TOP: list[str] = []


def _progress(event: Any) -> None:
    kind = event.kind
    stamp = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    if _TOP and event.workflow != _TOP[0] and event.task:
        stamp += f"  [{event.workflow}]"
    if kind == "task.started":
        click.echo(f"{stamp}  ▶ {event.task}")
    elif kind == "task.completed":
        dur = event.data.get("duration")
        click.echo(f"{stamp}  ✓ {event.task}" + (f"  ({dur * 1000:.1f} ms)" if dur is not None else ""))
    elif kind == "task.failed":
        click.echo(f"{stamp}  ✗ {event.task}: {event.data.get('error')}")
    elif kind == "task.skipped":
        click.echo(f"{stamp}  - {event.task} skipped")
    elif kind == "task.retrying":
        click.echo(f"{stamp}  ↻ {event.task} attempt {event.data.get('attempt')} failed, retrying")
    elif kind == "task.reused":
        click.echo(f"{stamp}  = {event.task} (completed earlier, output reused)")
    elif kind == "task.cancelled":
        click.echo(f"{stamp}  ⊘ {event.task} cancelled")
    elif kind == "task.fallback":
        click.echo(f"{stamp}  ↪ {event.task} failed ({event.data.get('error')}), "
                   f"falling back to {event.data.get('fallback')}")


@main.command()
@click.argument("target")
@click.option("--input", "input_", default=None, help="Workflow input (parsed as JSON when possible).")
@click.option("--quiet", is_flag=True, help="Print only the result.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(target: str, input_: str | None, quiet: bool, as_json: bool) -> None:
    """Run a workflow defined in a Python file: FILE or FILE:WORKFLOW."""
    import anyio

    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    module = _load_module(path)
    workflow = _find_workflow(module, wanted or None, path)
    value: Any = input_
    if input_ is not None:
        try:
            value = json.loads(input_)
        except ValueError:
            value = input_
    if not quiet and not as_json:
        click.echo(f"Running workflow {workflow.name!r} ({workflow.pattern_name}, {len(workflow.steps)} steps)")

    _TOP[:] = [workflow.name]

    async def go() -> Any:
        return await workflow.run(value, on_event=None if (quiet or as_json) else _progress)

    try:
        result = anyio.run(go)
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"workflow": result.workflow, "run_id": result.run_id,
                               "status": result.status.value, "output": result.output,
                               "error": result.error}, default=repr, indent=2))
    else:
        click.echo(f"\n{result.status.value.upper()} in {result.duration or 0:.3f}s  run_id={result.run_id}")
        if result.ok:
            click.echo(f"output: {result.output!r}")
        else:
            click.echo(f"error: {result.error}")
    if not result.ok:
        sys.exit(1)


@main.command()
@click.option("--storage", required=True, envvar="PYAGENT_STORAGE",
              help="Store URL holding the runs, e.g. sqlite://checkpoints.db (or $PYAGENT_STORAGE).")
@click.option("--workflow", "workflow_name", default=None, help="Only runs of this workflow.")
@click.option("--status", default=None, help="Only runs with this status (completed, failed, running, ...).")
@click.option("--since", default=None, help="Only runs started at or after this ISO date/datetime.")
@click.option("--limit", default=50, show_default=True, help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def history(storage: str, workflow_name: str | None, status: str | None, since: str | None,
            limit: int, as_json: bool) -> None:
    """List past workflow runs recorded in a store, newest first."""
    import anyio

    from pyagent.durability.history import parse_since, parse_status, query_store
    from pyagent.errors import PyAgentError

    try:
        ts, st = parse_since(since), parse_status(status)

        async def go() -> Any:
            return await query_store(storage, workflow=workflow_name, since=ts, status=st, limit=limit)

        records = anyio.run(go)
    except PyAgentError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        click.echo("No runs found.")
        return
    for r in records:
        stamp = r.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        dur = f"{r.duration:.3f}s" if r.duration is not None else "-"
        click.echo(f"{stamp}  {r.run_id}  {r.workflow:<24} {r.status.value:<10} "
                   f"tasks {r.tasks_completed}/{r.tasks_total}  {dur}")
        if r.error:
            click.echo(f"    error: {r.error}")


@main.command()
@click.argument("run_id")
@click.argument("target")
@click.option("--storage", required=True, envvar="PYAGENT_STORAGE",
              help="Store URL the run was checkpointed to (or $PYAGENT_STORAGE).")
@click.option("--quiet", is_flag=True, help="Print only the result.")
def resume(run_id: str, target: str, storage: str, quiet: bool) -> None:
    """Continue a checkpointed run: RUN_ID from --storage, with the workflow in TARGET (FILE[:WORKFLOW]).

    The store keeps a run's progress, not its code, so the workflow definition comes from
    the file it was run from. Without :WORKFLOW the file's workflow whose name matches the
    run is used.
    """
    import anyio

    from pyagent.durability.checkpoint import load_run
    from pyagent.errors import PyAgentError
    from pyagent.runner import resume_state

    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    try:
        state, seq = anyio.run(load_run, storage, run_id)
    except PyAgentError as exc:
        raise click.ClickException(str(exc)) from exc
    module = _load_module(path)
    workflow = _find_workflow(module, wanted or state.workflow, path)
    if not quiet:
        click.echo(f"Resuming run {run_id} of {workflow.name!r}: {len(state.completed)} task(s) "
                   f"done, {len(state.pending) + len(state.failed)} to go")

    async def go() -> Any:
        return await resume_state(workflow, state, checkpoint_url=storage, next_seq=seq,
                                  on_event=None if quiet else _progress)

    try:
        result = anyio.run(go)
    except PyAgentError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{result.status.value.upper()}  run_id={result.run_id}")
    if result.ok:
        click.echo(f"output: {result.output!r}")
    else:
        click.echo(f"error: {result.error}")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
