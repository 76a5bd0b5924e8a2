"""``pyagent history`` and ``pyagent resume``: runs recorded in a store."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from pyagent.cli.errors import ConfigError, one_line, plural
from pyagent.cli.loading import find_workflow, load_module
from pyagent.cli.progress import progress_monitor


def _storage(given: str | None) -> str:
    """``--storage``, else the ``storage`` setting (pyagent.toml, [tool.pyagent], PYAGENT_STORAGE)."""
    if given:
        return given
    from pyagent.config import get_settings
    from pyagent.errors import ConfigurationError

    try:
        configured = get_settings().storage
    except ConfigurationError as exc:
        raise ConfigError(one_line(exc)) from exc
    if not configured:
        raise ConfigError("no store to read: pass --storage URL (e.g. --storage sqlite://checkpoints.db), "
                          "or set storage in pyagent.toml, [tool.pyagent] in pyproject.toml or PYAGENT_STORAGE")
    return configured


@click.command()
@click.option("--storage", default=None,
              help="Store URL holding the runs, e.g. sqlite://checkpoints.db (default: the storage "
                   "setting, from pyagent.toml or $PYAGENT_STORAGE).")
@click.option("--workflow", "workflow_name", default=None, help="Only runs of this workflow.")
@click.option("--status", default=None, help="Only runs with this status (completed, failed, running, ...).")
@click.option("--since", default=None, help="Only runs started at or after this ISO date/datetime.")
@click.option("--limit", default=50, show_default=True, help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--handoffs", is_flag=True,
              help="Export the runs' handoffs and denied handoffs/tool calls as JSON, one object each, oldest first.")
def history(storage: str | None, workflow_name: str | None, status: str | None, since: str | None,
            limit: int, as_json: bool, handoffs: bool) -> None:
    """List past workflow runs recorded in a store, newest first (--handoffs: their handoffs)."""
    import anyio

    storage = _storage(storage)

    from pyagent.durability.history import handoff_rows, parse_since, parse_status, query_store
    from pyagent.errors import PyAgentError

    try:
        ts, st = parse_since(since), parse_status(status)

        async def go() -> Any:
            return await query_store(storage, workflow=workflow_name, since=ts, status=st, limit=limit)

        records = anyio.run(go)
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    if handoffs:  # a compliance export: JSON whatever --json says
        click.echo(json.dumps(handoff_rows(records), indent=2))
        return
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        click.echo("No runs found.")
        return
    for r in records:
        stamp = r.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        dur = f"{r.duration:.3f}s" if r.duration is not None else "-"
        if r.unreadable:
            click.echo(f"{stamp}  {r.run_id}  {r.workflow:<24} {r.status.value:<10} (unreadable)")
            click.echo(f"    unreadable: {r.unreadable}")
            continue
        click.echo(f"{stamp}  {r.run_id}  {r.workflow:<24} {r.status.value:<10} "
                   f"tasks {r.tasks_completed}/{r.tasks_total}  {dur}")
        if r.resumes:
            when = ", ".join(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) for at in r.resumes)
            click.echo(f"    resumed {plural(len(r.resumes), 'time')}: {when}")
        if r.error:
            click.echo(f"    error: {r.error}")
        for line in question_lines(r):
            click.echo(f"    {line}")


def question_lines(record: Any) -> list[str]:
    """What a run asked people and what they answered, from its audit trail: one line each."""
    lines = []
    for entry in record.audit:
        data, when = entry.data, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.timestamp or 0))
        if entry.kind == "interrupt.asked":
            lines.append(f"? {when}  {entry.task} asked {data.get('question')!r} (question {data.get('interrupt')})")
        elif entry.kind == "interrupt.answered":
            lines.append(f"✓ {when}  answered by {data.get('answered_by') or 'someone'}: {data.get('answer')} "
                         f"(question {data.get('interrupt')})")
        elif entry.kind == "interrupt.expired":
            lines.append(f"✗ {when}  nobody answered in time: expired (question {data.get('interrupt')})")
        elif entry.kind == "interrupt.escalated":
            lines.append(f"↑ {when}  nobody answered in time: escalated to question {data.get('to')} "
                         f"(question {data.get('interrupt')})")
    return lines


@click.command()
@click.argument("run_id")
@click.argument("target")
@click.option("--storage", default=None,
              help="Store URL the run was checkpointed to (default: the storage setting, from "
                   "pyagent.toml or $PYAGENT_STORAGE).")
@click.option("--wait", is_flag=True,
              help="If another process owns the run, wait for its lease to end instead of failing.")
@click.option("--wait-timeout", type=float, default=None, show_default="60",
              help="With --wait: give up after this many seconds.")
@click.option("--allow-plaintext", is_flag=True,
              help="Read unencrypted checkpoints although PYAGENT_STATE_KEY is set (saved before it was).")
@click.option("--quiet", is_flag=True, help="Print only the result.")
def resume(run_id: str, target: str, storage: str | None, wait: bool, wait_timeout: float | None,
           allow_plaintext: bool, quiet: bool) -> None:
    """Continue a checkpointed run: RUN_ID from --storage, with the workflow in TARGET (FILE[:WORKFLOW]).

    The store keeps a run's progress, not its code, so the workflow definition comes from
    the file it was run from. Without :WORKFLOW the file's workflow whose name matches the
    run is used. The run is claimed first: if another process owns it, this fails naming
    the owner (or waits, with --wait).
    """
    import anyio

    from pyagent.cli.people import waiting_notice
    from pyagent.cli.run import stopped
    from pyagent.errors import PyAgentError
    from pyagent.runner import abandon, claim_stored_run, resume_state

    url = _storage(storage)
    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    module = load_module(path)
    monitors: list[Any] = []  # the progress monitor, once the run's workflow is known

    async def go() -> Any:
        state, claimed = await claim_stored_run(url, run_id, wait=wait, wait_timeout=wait_timeout,
                                                allow_plaintext=True if allow_plaintext else None)
        try:
            workflow = find_workflow(module, wanted or state.workflow, path)
            state.check_workflow(workflow, f"the saved state of run {state.run_id!r}")  # before "Resuming"
        except BaseException:
            await abandon(claimed)
            raise
        if not quiet:
            waits = f" ({len(state.waiting)} waiting for an answer)" if state.waiting else ""
            click.echo(f"Resuming run {run_id} of {workflow.name!r}: {plural(len(state.completed), 'task')} "
                       f"done, {len(state.pending) + len(state.failed) + len(state.waiting)} to go{waits}")
            monitor = progress_monitor(workflow.name)
            if monitor is not None:
                monitors.append(monitor)
        return await resume_state(workflow, state, checkpoint_url=url, claimed=claimed,
                                  on_event=monitors[0].on_event if monitors else None,
                                  listeners=[waiting_notice(url)])

    try:
        result = anyio.run(go)
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    except KeyboardInterrupt:
        stopped(run_id, storage)
        sys.exit(130)
    finally:
        for monitor in monitors:
            monitor.close()
    click.echo(f"{result.status.value.upper()}  run_id={result.run_id}")
    if result.ok:
        click.echo(f"output: {result.output!r}")
    else:
        click.echo(f"error: {result.error}")
        sys.exit(1)


COMMANDS = [history, resume]
