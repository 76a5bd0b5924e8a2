"""Plain live progress for ``pyagent run`` and ``pyagent resume``: one line per task event."""

from __future__ import annotations

import time
from typing import Any

import click

TOP: list[str] = []


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
    elif kind == "task.fallback":
        click.echo(f"{stamp}  ↪ {event.task} failed ({event.data.get('error')}), "
                   f"falling back to {event.data.get('fallback')}")


