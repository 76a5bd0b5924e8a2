"""pyagent-slack: Slack notifications for failed runs, opened circuit breakers and more.

``SlackMonitor(webhook_url=...)`` or ``SlackMonitor(token=..., channel=...)``; delivery runs
in a background thread with a bounded queue, so a run never waits for Slack.
"""

from __future__ import annotations

from pyagent_slack.monitor import SlackMonitor

__all__ = ["SlackMonitor"]
