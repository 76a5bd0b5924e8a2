"""pyagent-console: live terminal progress and summaries for pyagent runs, plain lines elsewhere."""

from __future__ import annotations

from pyagent_console.monitor import ConsoleMonitor

__all__ = ["ConsoleMonitor"]
