"""``pyagent serve``: serve an orchestrator's schedules, event subscriptions and webhooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from pyagent.cli.loading import load_module


def find_orchestrator(module: Any, wanted: str | None, path: Path) -> Any:
    """The Orchestrator at module level in ``module`` (by variable name when several)."""
    from pyagent.controller import Orchestrator

    found = {name: v for name, v in vars(module).items() if isinstance(v, Orchestrator)}
    if wanted is not None:
        if wanted in found:
            return found[wanted]
        have = ", ".join(found) or "none"
        raise click.ClickException(f"{path} has no orchestrator {wanted!r} (orchestrators: {have})")
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise click.ClickException(
            f"{path} defines no Orchestrator at module level: create one (orchestrator = Orchestrator()) "
            "and add schedules, on_event subscriptions or webhooks to it")
    raise click.ClickException(f"{path} defines several orchestrators ({', '.join(found)}): pick one with {path}:NAME")


@click.command()
@click.argument("target")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the HTTP server (webhooks, web apps such as the dashboard) listens on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port the HTTP server listens on (0: any free port).")
@click.option("--storage", default=None, metavar="URL",
              help="Store where runs are recorded (sqlite://runs.db, postgresql://...); overrides the file's.")
@click.option("--grace", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds in-flight runs may take to finish on SIGTERM/SIGINT before they are checkpointed.")
@click.option("--token", default=None, metavar="TOKEN",
              help="Token the web apps served here (the dashboard at /ui) ask of every request; "
                   "default: their own setting (PYAGENT_DASHBOARD_TOKEN). Webhooks keep their own secrets.")
@click.option("--concurrency", default=100, show_default=True, type=click.IntRange(min=1),
              help="How many runs this process executes at once; the others wait (queued in the store).")
@click.option("--poll-interval", default=0.5, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With a store shared by several replicas: seconds between two looks at its queue.")
def serve(target: str, host: str, port: int, storage: str | None, grace: float, token: str | None,
          concurrency: int, poll_interval: float) -> None:
    """Serve the schedules, event subscriptions and webhooks of an Orchestrator: FILE[:ORCHESTRATOR].

    With a store, runs a previous serve left unfinished are resumed on start. SIGTERM or
    SIGINT stops accepting, lets runs in flight finish within --grace, checkpoints the rest
    for the next start, and exits 0. Web apps that plugins add (the dashboard at /ui) are
    served on --host/--port with the webhooks, which then listen even with no webhook.

    Several replicas may serve one SQL store: each takes queued runs off it, --concurrency at
    a time, within each workflow's max_active_runs across all of them, and resumes the runs of
    a replica that died once its leases expire.
    """
    import anyio

    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = load_module(path)
    orchestrator = find_orchestrator(module, wanted or None, path)
    log = logging.getLogger("pyagent.serve")
    log.info("serving %s (%d workflow(s), %d trigger(s))", target, len(orchestrator.workflows),
             len(orchestrator.triggers))

    async def go() -> None:
        await orchestrator.serve(host=host, port=port, store=storage, grace=grace, web_token=token,
                                 max_running=concurrency, poll_interval=poll_interval)

    try:
        anyio.run(go, backend="asyncio")
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    log.info("stopped")


COMMANDS = [serve]
