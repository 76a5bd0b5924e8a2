"""Entry point: registers the ``console`` monitor kind (rich is imported on first use)."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl
from pyagent_console.monitor import ConsoleMonitor


@hookimpl
def pyagent_register_monitors(register: Any) -> None:
    register("console", ConsoleMonitor)
