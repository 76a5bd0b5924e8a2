"""What a notification says: Block Kit blocks and the plain text Slack shows in alerts."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

FIELD_LIMIT = 2000  # characters of one section field's text (Block Kit refuses the message past it)
TEXT_LIMIT = 3000  # characters of the notification text (Slack truncates long ones anyway)

# Notification names for ``on=``: an event kind, or a name for a situation built from events.
NOTIFICATIONS: dict[str, tuple[str, ...]] = {
    "workflow.failed": ("workflow.failed", "task.failed"),
    "workflow.completed": ("workflow.completed",),
    "workflow.cancelled": ("workflow.cancelled",),
    "task.failed": ("task.failed",),
    "task.retrying": ("task.retrying",),
    "task.fallback": ("task.fallback",),
    "handoff": ("handoff",),
    "circuit.changed": ("circuit.changed",),
    "circuit.opened": ("circuit.changed",),
    # A run that paused for a person (workflow.waiting) and later ended, however it ended.
    "paused_run.ended": ("workflow.waiting", "workflow.completed", "workflow.failed", "workflow.cancelled"),
}
DEFAULT_ON = ("workflow.failed", "circuit.opened", "paused_run.ended")


class Batch:
    """Notifications of one kind for one workflow, sent as one message with a count."""

    def __init__(self, key: tuple[str, str], details: dict[str, Any]) -> None:
        self.key = key
        self.first = details
        self.last = details
        self.count = 1
        self.first_seen = time.monotonic()

    def add(self, details: dict[str, Any]) -> None:
        self.last = details
        self.count += 1


def escape(value: Any) -> str:
    """Text from runs (errors, names) as literal mrkdwn: Slack reads ``<!channel>``, ``<@U123>``
    and ``<url|label>`` as mentions and links unless ``&``, ``<`` and ``>`` are escaped."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, never in the middle of an escape (``&amp;``)."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]*$", "", text[: limit - 1]) + "…"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _headline(notification: str, workflow: str, details: dict[str, Any], count: int) -> str:
    many = count > 1
    if notification == "workflow.failed":
        return f"{count} runs of workflow '{workflow}' failed" if many else f"Workflow '{workflow}' failed"
    if notification == "circuit.opened":
        return f"Circuit breaker of workflow '{workflow}' opened" + (f" ({count} times)" if many else "")
    if notification == "paused_run.ended":
        status = details.get("status") or "ended"
        return (f"{count} paused runs of workflow '{workflow}' ended" if many
                else f"Paused run of workflow '{workflow}' {status}")
    what = notification.replace(".", " ")
    return f"{what}: workflow '{workflow}'" + (f" ({count} times)" if many else "")


def build(batch: Batch, link: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(text, blocks) for one batch: the latest occurrence in full, and how many there were."""
    notification, workflow = batch.key
    d = batch.last
    # The header is plain text (Slack reads nothing in it); everything else is mrkdwn, escaped.
    headline = _headline(notification, workflow, d, batch.count)
    icon = {"workflow.failed": ":x:", "circuit.opened": ":rotating_light:",
            "paused_run.ended": ":arrow_forward:"}.get(notification, ":information_source:")
    run_id = escape(d.get("run_id", ""))
    fields = [("Workflow", escape(workflow)), ("Run id", f"`{run_id}`")]
    if d.get("task"):
        fields.append(("Failing task" if notification == "workflow.failed" else "Task", escape(d["task"])))
    if d.get("error"):
        fields.append(("Error", f"```{_clip(escape(str(d['error'])[:500]), FIELD_LIMIT - 20)}```"))
    if d.get("duration") is not None:
        fields.append(("Duration", _duration(d["duration"])))
    if d.get("attempts"):
        fields.append(("Attempts", str(d["attempts"])))
    if d.get("reason"):
        fields.append(("Reason", escape(d["reason"])))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{headline}"[:150], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", FIELD_LIMIT)}
                                       for k, v in fields]},
    ]
    notes = []
    if batch.count > 1:
        first = escape(batch.first.get("run_id", ""))
        notes.append(f"{batch.count} occurrences coalesced (first run `{first}`, latest shown)")
    if link:
        url = link.format(run_id=quote(str(d.get("run_id", "")), safe=""), workflow=quote(workflow, safe=""))
        notes.append(f"<{escape(url)}|Open the run>")
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]})
    text = f"{icon} {escape(_headline(notification, workflow, d, batch.count))}: run {run_id}"
    if d.get("error"):
        text += f": {escape(str(d['error'])[:200])}"
    return _clip(text, TEXT_LIMIT), blocks
