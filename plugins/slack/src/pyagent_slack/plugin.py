"""Entry point: registers the ``slack`` monitor kind (slack-sdk is imported on first delivery)."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl
from pyagent_slack.monitor import SlackMonitor


@hookimpl
def pyagent_register_monitors(register: Any) -> None:
    register("slack", SlackMonitor)
