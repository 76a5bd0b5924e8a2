"""What a notification says: Block Kit blocks and the plain text Slack shows in alerts."""

from __future__ import annotations

import time
from typing import Any

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
    headline = _headline(notification, workflow, d, batch.count)
    icon = {"workflow.failed": ":x:", "circuit.opened": ":rotating_light:",
            "paused_run.ended": ":arrow_forward:"}.get(notification, ":information_source:")
    fields = [("Workflow", workflow), ("Run id", f"`{d.get('run_id', '')}`")]
    if d.get("task"):
        fields.append(("Failing task" if notification == "workflow.failed" else "Task", str(d["task"])))
    if d.get("error"):
        fields.append(("Error", f"```{str(d['error'])[:500]}```"))
    if d.get("duration") is not None:
        fields.append(("Duration", _duration(d["duration"])))
    if d.get("attempts"):
        fields.append(("Attempts", str(d["attempts"])))
    if d.get("reason"):
        fields.append(("Reason", str(d["reason"])))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{headline}"[:150], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
    ]
    notes = []
    if batch.count > 1:
        first = batch.first.get("run_id", "")
        notes.append(f"{batch.count} occurrences coalesced (first run `{first}`, latest shown)")
    if link:
        url = link.format(run_id=d.get("run_id", ""), workflow=workflow)
        notes.append(f"<{url}|Open the run>")
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]})
    text = f"{icon} {headline}: run {d.get('run_id', '')}"
    if d.get("error"):
        text += f": {str(d['error'])[:200]}"
    return text, blocks
