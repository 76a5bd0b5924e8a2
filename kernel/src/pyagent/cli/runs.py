"""``pyagent runs``: the runs a store holds that are not over (queued, running, waiting) or failed,
and ``pyagent runs cancel``, which asks the process running a run to stop it."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from pyagent.cli.errors import FAILED_EXIT, ConfigError, one_line
from pyagent.cli.history import _storage

#: What ``pyagent runs`` lists when no --status is given: what an operator watches.
SHOWN = ("pending", "running", "waiting", "failed")
STATUSES = ("pending", "running", "waiting", "failed", "completed", "cancelled", "skipped")


async def run_rows(url: str, *, workflow: str | None = None, status: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
    """The runs of ``status`` (default: :data:`SHOWN`) in the store at ``url``, newest first, with
    who holds each (``owner``, ``lease_expires_at``: a live or expired lease, else None), whether
    a cancel was asked (``cancel_requested``: the reason) and a failed run's ``error``."""
    from pyagent.durability.store import supports_queue
    from pyagent.durability.stores import close_store, open_store

    store = await open_store(url, setting="--storage")
    try:
        headers = []
        for wanted in (status,) if status else SHOWN:
            headers += await store.list_runs(workflow=workflow, status=wanted, limit=limit)
        headers.sort(key=lambda h: (h.started_at, h.run_id), reverse=True)
        headers = headers[:limit]
        leases = {lease.run_id: lease for lease in await store.list_leases()} if headers else {}
        ids = [h.run_id for h in headers]
        asked = await store.cancel_requests(ids) if ids and supports_queue(store) else {}
    finally:
        await close_store(store)
    rows = []
    for h in headers:
        lease = leases.get(h.run_id)
        rows.append({"run_id": h.run_id, "workflow": h.workflow, "status": h.status,
                     "started_at": h.started_at, "finished_at": h.finished_at,
                     "owner": lease.owner if lease is not None else None,
                     "lease_expires_at": lease.expires_at if lease is not None else None,
                     "cancel_requested": asked.get(h.run_id),
                     "error": _error(h, url) if h.status == "failed" else None})
    return rows


def _error(header: Any, url: str) -> str | None:
    from pyagent.durability.history import ExecutionRecord
    from pyagent.durability.stores import safe_url
    from pyagent.errors import PyAgentError

    try:
        return ExecutionRecord.from_payload(header.payload, f"run {header.run_id!r} in {safe_url(url)}").error
    except PyAgentError:  # encrypted with another key, or an older format: the list goes on
        return None


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _holder(row: dict[str, Any], now: float) -> str:
    if row["owner"] is None:
        return ""
    left = row["lease_expires_at"] - now
    expiry = f"lease expires in {left:.0f}s" if left > 0 else f"lease expired {-left:.0f}s ago"
    return f"  owner {row['owner']} ({expiry})"


@click.group(invoke_without_command=True)
@click.option("--storage", default=None,
              help="Store URL holding the runs, e.g. sqlite://runs.db (default: the storage setting, "
                   "from pyagent.toml or $PYAGENT_STORAGE).")
@click.option("--workflow", "workflow_name", default=None, help="Only runs of this workflow.")
@click.option("--status", default=None,
              help=f"Only runs with this status ({', '.join(STATUSES)}); default: {', '.join(SHOWN)}.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def runs(ctx: click.Context, storage: str | None, workflow_name: str | None, status: str | None, limit: int,
         as_json: bool) -> None:
    """List the runs a store holds that are queued (pending), running, waiting for people, or
    failed, newest first; a running run shows the replica that holds it and when its lease
    expires. `pyagent runs cancel RUN_ID` cancels one."""
    if ctx.invoked_subcommand is not None:
        return
    import anyio

    from pyagent.errors import PyAgentError

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r} is not a run status: use one of {', '.join(STATUSES)}")
    url = _storage(storage)
    try:
        rows = anyio.run(lambda: run_rows(url, workflow=workflow_name, status=status, limit=limit))
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No runs found.")
        return
    now = time.time()
    for row in rows:
        asked = f"  cancel requested: {row['cancel_requested']}" if row["cancel_requested"] else ""
        click.echo(f"{_when(row['started_at'])}  {row['run_id']}  {row['workflow']:<24} {row['status']:<9}"
                   f"{_holder(row, now)}{asked}")
        if row["error"]:
            click.echo(f"    error: {row['error']}")


@runs.command()
@click.argument("run_id")
@click.option("--reason", default="cancelled on request", show_default=True,
              help="Why: the cancelled run's error says it.")
@click.option("--storage", default=None,
              help="Store URL holding the run (default: the storage setting, from pyagent.toml or $PYAGENT_STORAGE).")
@click.pass_context
def cancel(ctx: click.Context, run_id: str, reason: str, storage: str | None) -> None:
    """Cancel run RUN_ID, wherever it is: a queued or unheld run is cancelled at once; a running
    one is stopped by the process that holds it at its next task boundary (tasks running then
    finish first), and is not resumed by anyone."""
    import anyio

    from pyagent.durability.store import supports_queue
    from pyagent.durability.stores import close_store, open_store, safe_url
    from pyagent.errors import PyAgentError

    given = ctx.parent.params.get("storage") if ctx.parent is not None else None  # pyagent runs --storage URL cancel
    url = _storage(storage or given)

    async def go() -> tuple[str | None, str | None]:
        store = await open_store(url, setting="--storage")
        try:
            if not supports_queue(store):
                raise ConfigError(
                    f"the store {safe_url(url)} cannot cancel runs across processes (it has no request_cancel()): "
                    "upgrade its plugin (pyagent-sql does), or cancel the run in its own process (workflow.cancel)")
            outcome = await store.request_cancel(run_id, reason=reason, now=time.time())
            lease = await store.get_lease(run_id) if outcome == "requested" else None
            status = None
            if outcome == "finished":
                stored = await store.load(run_id)
                status = stored.header.status if stored is not None else None
            return outcome, (lease.owner if lease is not None else status)
        finally:
            await close_store(store)

    try:
        outcome, detail = anyio.run(go)
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    if outcome is None:
        click.echo(f"Error: no run {run_id!r} in {safe_url(url)}: check the run id (pyagent runs --storage URL)",
                   err=True)
        sys.exit(FAILED_EXIT)
    if outcome == "cancelled":
        click.echo(f"Cancelled run {run_id}: nobody was running it.")
    elif outcome == "requested":
        click.echo(f"Cancel requested: {detail or 'the process holding run ' + run_id} stops run {run_id} at its "
                   "next task boundary (within a second or so of a task ending) if it is a serving process "
                   "(pyagent serve); a pyagent run or workflow.run() process does not look for cancel requests: "
                   "stop it there (Ctrl-C, workflow.cancel).")
    else:
        click.echo(f"Run {run_id} has already ended ({detail}): nothing to cancel.")


COMMANDS = [runs]
