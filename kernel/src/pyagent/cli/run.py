"""``pyagent run``: run a workflow from a Python file with live progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pyagent.cli.errors import ConfigError, one_line, plural
from pyagent.cli.loading import find_workflow, load_module
from pyagent.cli.people import waiting_notice
from pyagent.cli.progress import progress_monitor
from pyagent.engine import new_run_id
from pyagent.errors import PyAgentError
from pyagent.runner import check_run_id, resolve_pattern, run_workflow


@click.command()
@click.argument("target")
@click.option("--input", "input_", default=None, help="Workflow input (parsed as JSON when possible).")
@click.option("--quiet", is_flag=True, help="Print only the result.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--run-id", default=None, help="The run's id (default: a new random one). It is printed "
              "when the run starts, so a run killed midway can be resumed by it.")
def run(target: str, input_: str | None, quiet: bool, as_json: bool, run_id: str | None) -> None:
    """Run a workflow defined in a Python file: FILE or FILE:WORKFLOW."""
    import anyio

    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    module = load_module(path)
    workflow = find_workflow(module, wanted or None, path)
    value: Any = input_
    if input_ is not None:
        try:
            value = json.loads(input_)
        except ValueError:
            value = input_
    try:
        resolve_pattern(workflow)  # a missing plugin or a bad workflow: before anything is printed
        if run_id is not None:
            check_run_id(run_id)  # "" or one no store can keep: refused, not replaced
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    run_id = run_id or new_run_id()
    if not quiet and not as_json:
        click.echo(f"Running workflow {workflow.name!r} ({workflow.pattern_name}, "
                   f"{plural(len(workflow.steps), 'step')}), run_id={run_id}")

    monitor = None if (quiet or as_json) else progress_monitor(workflow.name)
    cp = workflow.checkpointing
    storage = cp.storage if cp is not None and cp.enabled else None
    # A run that waits for people says what it waits for and how to answer, even with --quiet.
    notice = [waiting_notice(storage)] if not as_json else []

    async def go() -> Any:
        return await run_workflow(workflow, value, on_event=None if monitor is None else monitor.on_event,
                                  run_id=run_id, listeners=notice)

    try:
        result = anyio.run(go)
    except PyAgentError as exc:  # refused before any agent ran: a missing plugin, a bad setting
        raise ConfigError(one_line(exc)) from exc
    except KeyboardInterrupt:
        stopped(run_id, storage)
        sys.exit(130)
    finally:
        if monitor is not None:
            monitor.close()
    if as_json:
        click.echo(json.dumps({"workflow": result.workflow, "run_id": result.run_id,
                               "status": result.status.value, "output": result.output,
                               "error": result.error}, default=repr, indent=2))
    else:
        took = "" if result.duration is None else f" in {result.duration:.3f}s"  # a cancelled run has none
        click.echo(f"\n{result.status.value.upper()}{took}  run_id={result.run_id}")
        if result.ok:
            click.echo(f"output: {result.output!r}")
        else:
            click.echo(f"error: {result.error}")
    if not result.ok:
        sys.exit(1)


def stopped(run_id: str, storage: str | None) -> None:
    """What Ctrl-C left: a run that waited still waits (with a store, it can be answered and resumed)."""
    if storage:
        click.echo(f"\nStopped. Run {run_id} keeps what it did: if it waits for answers, answer with pyagent approve "
                   f"and continue it with pyagent resume {run_id} FILE --storage {storage}", err=True)
    else:
        click.echo(f"\nStopped. Run {run_id} had no store, so it cannot be continued.", err=True)


COMMANDS = [run]
