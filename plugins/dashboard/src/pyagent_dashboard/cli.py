"""``pyagent dashboard``: the dashboard alone, read-only, against a store."""

from __future__ import annotations

import ipaddress
import runpy
import sys
from pathlib import Path
from typing import Any

import click

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


class Refused(click.ClickException):
    """A command that could not start (exit code 2, as for the kernel's configuration errors)."""

    exit_code = 2


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_workflows(path: Path) -> list[Any]:
    """The workflows a Python file defines at module level (also those added to an Orchestrator in it)."""
    from pyagent.plugin import Workflow

    if not path.is_file():
        raise Refused(f"--workflows {path}: no such file")
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        namespace = runpy.run_path(str(path), run_name=f"pyagent_dashboard_{path.stem}")
    except (Exception, SystemExit) as exc:
        raise Refused(f"--workflows {path}: the file raised {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    found: dict[str, Any] = {}
    for value in namespace.values():
        if isinstance(value, Workflow):
            found.setdefault(value.name, value)
        for wf in (getattr(value, "workflows", None) or {}).values() if _is_orchestrator(value) else ():
            found.setdefault(wf.name, wf)
    if not found:
        raise Refused(f"--workflows {path}: the file defines no Workflow at module level")
    return list(found.values())


def _is_orchestrator(value: Any) -> bool:
    from pyagent import Orchestrator

    return isinstance(value, Orchestrator)


@click.command("dashboard")
@click.option("--storage", required=True, metavar="URL",
              help="The store whose runs to show: sqlite://runs.db, postgresql://...")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs a token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--token", envvar="PYAGENT_DASHBOARD_TOKEN", default=None, metavar="TOKEN",
              help="Needed on every page (login form or Authorization: Bearer). "
                   "Default: $PYAGENT_DASHBOARD_TOKEN.")
@click.option("--workflows", "workflow_files", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="A Python file defining workflows, to draw their graphs (repeatable).")
@click.option("--poll-interval", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between store reads for live updates.")
def dashboard(storage: str, host: str, port: int, token: str | None, workflow_files: tuple[Path, ...],
              poll_interval: float) -> None:
    """Serve a read-only dashboard of the runs in a store.

    Runs (filter, page, live), each run's timeline, graph, input, outputs and audit trail, the
    ticks schedules recorded, and metrics. It never cancels or resumes runs: pyagent serve
    serves it at /ui, able to act, or mount it in an application with an orchestrator
    (pyagent_dashboard.create_app).
    """
    import uvicorn

    from pyagent_dashboard.app import create_app

    if not token and not is_loopback(host):
        raise Refused(f"--host {host} would show every run to the network without a token: pass "
                      "--token (or set PYAGENT_DASHBOARD_TOKEN), or keep --host 127.0.0.1")
    workflows = [wf for path in workflow_files for wf in load_workflows(path)]
    app = create_app(storage, workflows=workflows, read_only=True, token=token or None,
                     poll_interval=poll_interval)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3,
                            lifespan="on")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host

    async def serve() -> None:
        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.05)
            bound = port
            for s in getattr(server, "servers", []):
                for sock in s.sockets:
                    bound = sock.getsockname()[1]
            click.echo(f"pyagent dashboard (read-only) on http://{shown}:{bound}/ — runs in "
                       f"{app.state.dashboard.source.display_url}; Ctrl+C stops it")

    import anyio

    anyio.run(serve)
