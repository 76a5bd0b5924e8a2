"""Live progress for ``pyagent run``, ``pyagent resume`` and ``pyagent serve``.

:func:`progress_monitor` makes the one choice they share: the console monitor of
``pyagent-console`` when it is installed, else the plain lines of :func:`progress`.
"""

from __future__ import annotations

import time
from typing import Any

import click

TOP: list[str] = []


class PlainProgress:
    """The plain progress lines as a monitor, for when no console monitor is installed."""

    def on_event(self, event: Any) -> None:
        progress(event)

    def close(self) -> None:
        """Nothing to flush: every line is written as its event happens."""


def progress_monitor(top: str | None = None) -> Any | None:
    """The monitor that shows progress in the terminal for ``pyagent run`` and ``pyagent serve``.

    ``ConsoleMonitor()`` when ``pyagent-console`` is installed, else :class:`PlainProgress`;
    None when a console monitor is configured already (``[tool.pyagent] monitors``), since it
    reports on every run by itself. ``top`` names the workflow being run, so that the plain
    lines mark events of nested workflows. Call ``close()`` on the result when done.
    """
    from pyagent.config import get_settings
    from pyagent.plugins import get_runtime

    if any(spec.name == "console" for spec in get_settings().monitors):
        return None
    TOP[:] = [top] if top else []
    factory = get_runtime().registry("monitors").get("console")
    if factory is None:
        return PlainProgress()
    return factory.obj()


def progress(event: Any) -> None:
    kind = event.kind
    stamp = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    if TOP and event.workflow != TOP[0] and event.task:
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
    elif kind == "task.waiting":
        click.echo(f"{stamp}  ⏸ {event.task} waits for an answer: {event.data.get('question')}")
    elif kind == "task.fallback":
        click.echo(f"{stamp}  ↪ {event.task} failed ({event.data.get('error')}), "
                   f"falling back to {event.data.get('fallback')}")


