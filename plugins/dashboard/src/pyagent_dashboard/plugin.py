"""Entry point: adds ``pyagent dashboard`` (starlette, Jinja2 and uvicorn are imported when it runs)."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl


def _command() -> Any:
    from pyagent_dashboard.cli import dashboard

    return dashboard


@hookimpl
def pyagent_register_commands(register: Any) -> None:
    register("dashboard", _command)
