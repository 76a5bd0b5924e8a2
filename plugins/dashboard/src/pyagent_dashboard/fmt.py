"""How values look on a page: times, durations, statuses, and inputs and outputs in full or cut short.

Everything shown passes :func:`pyagent_dashboard.security.mask` first, and is then escaped by
Jinja2's autoescape when it reaches a template: an output holding ``<script>`` is shown as text.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from pyagent_dashboard.security import mask

PREVIEW_CHARS = 400
# "show all" holds at most this much; beyond it the page says how much more there is.
FULL_CHARS = 200_000

STATUS_LABELS = {"completed": "completed", "failed": "failed", "running": "running", "pending": "pending",
                 "cancelled": "cancelled", "skipped": "skipped", "waiting": "waiting"}


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def when_iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def status_of(value: Any) -> str:
    return str(getattr(value, "value", value))


def trigger_kind(rec: Any) -> str:
    """How the run first started: manual, cron, webhook, event (as the kernel recorded it), or
    resume for a run resumed from a save that did not keep its origin (older records)."""
    trigger = getattr(rec, "trigger", None)
    if isinstance(trigger, dict) and trigger.get("kind"):
        return str(trigger["kind"])
    if getattr(rec, "resumes", None):
        return "resume"
    return "manual"


def trigger_source(rec: Any) -> str | None:
    """What started it within its kind: the schedule's name, the webhook's path, the event's name."""
    trigger = getattr(rec, "trigger", None)
    source = trigger.get("source") if isinstance(trigger, dict) else None
    return str(source) if source else None


def masked(value: Any) -> Any:
    """``value`` with secrets masked (see :func:`pyagent_dashboard.security.mask`)."""
    return mask(value)


def as_text(value: Any) -> str:
    """A value as people read it: text as it is, anything else as indented JSON (secrets masked)."""
    value = mask(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # keys JSON cannot hold (tuples, ...)
        return repr(value)


@dataclass
class Shown:
    """A value prepared for a page: its preview, and the rest behind "show all"."""

    preview: str
    full: str
    truncated: bool
    hidden_chars: int = 0


def shown(value: Any, limit: int = PREVIEW_CHARS) -> Shown:
    text = as_text(value)
    full = text[:FULL_CHARS]
    hidden = max(0, len(text) - FULL_CHARS)
    if len(text) <= limit:
        return Shown(text, full, False)
    return Shown(text[:limit].rstrip() + " …", full, True, hidden)


def shown_text(text: str | None, limit: int = PREVIEW_CHARS) -> Shown:
    return shown(text or "", limit)
