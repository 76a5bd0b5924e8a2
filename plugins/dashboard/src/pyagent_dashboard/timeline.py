"""The run's timeline (a Gantt chart): one row per task, one bar per attempt.

Failed attempts, the attempt that finally worked, a fallback agent's attempt, a task still
running, a task waiting for a person's answer and a task reused from before a resume each look different; the times the run was
resumed are marked across every row.
"""

from __future__ import annotations

import time
from typing import Any

from markupsafe import Markup

from pyagent_dashboard.fmt import duration
from pyagent_dashboard.svg import document, el

WIDTH = 980
LABEL = 190
ROW = 28
TOP = 34


def outcome(task: Any, attempt: Any, index: int) -> str:
    """How one attempt ended, as the chart shows it."""
    if task.reused:
        return "reused"
    if attempt.finished_at is None:
        return {"running": "running", "waiting": "waiting"}.get(status(task), "stopped")
    if task.fallback_strategy and task.attempts and attempt.agent != task.attempts[0].agent:
        return "fallback-failed" if attempt.error else "fallback"
    return "failed" if attempt.error else "ok"


def status(task: Any) -> str:
    return str(getattr(task.status, "value", task.status))


def draw(record: Any, now: float | None = None) -> Markup:
    now = time.time() if now is None else now
    tasks = list(record.tasks)
    spans = [(a.started_at, a.finished_at) for t in tasks for a in t.attempts if a.started_at is not None]
    starts = [s for s, _ in spans] + [record.started_at or now]
    ends = [f if f is not None else now for _, f in spans] + [record.finished_at or min(now, max(starts))]
    t0, t1 = min(starts), max([*ends, min(starts) + 0.001])
    span = max(t1 - t0, 1e-3)
    inner = WIDTH - LABEL - 110  # room for the last bar's label

    def x(ts: float) -> float:
        return LABEL + (ts - t0) / span * inner

    ordered = sorted(tasks, key=lambda t: (t.started_at is None, t.started_at or 0.0))
    height = TOP + ROW * max(len(ordered), 1) + 24
    body: list[str] = []
    for i in range(6):  # the time axis
        ts = t0 + span * i / 5
        body.append(el("line", x1=x(ts), y1=TOP - 6, x2=x(ts), y2=height - 20, class_="grid"))
        body.append(el("text", f"+{duration(ts - t0)}", x=x(ts), y=TOP - 12, class_="axis", text_anchor="middle"))
    for row, task in enumerate(ordered):
        y = TOP + row * ROW
        name = task.name if len(task.name) <= 26 else task.name[:25] + "…"
        body.append(el("text", el("title", task.name), name, x=LABEL - 8, y=y + ROW / 2 + 4,
                       class_="task-label", text_anchor="end"))
        attempts = list(task.attempts)
        if not attempts:
            body.append(el("text", f"{status(task)}{' — ' + task.error if task.error else ''}"[:90],
                           x=LABEL + 4, y=y + ROW / 2 + 4, class_=f"not-run status-{status(task)}"))
            continue
        for index, att in enumerate(attempts):
            start = att.started_at if att.started_at is not None else t0
            end = att.finished_at if att.finished_at is not None else now
            kind = outcome(task, att, index)
            left, right = x(start), max(x(end), x(start) + 3)
            label = f"#{att.number}" + (" reused" if kind == "reused" else "") + (
                f" {att.agent}" if kind.startswith("fallback") else "")
            tip = (f"{task.name}: attempt {att.number} by {att.agent}, {duration(end - start)}"
                   f"{f' ({kind})' if att.finished_at is None else ''}"
                   f"{' — ' + att.error if att.error else ''}"
                   f"{' — reused from before a resume' if kind == 'reused' else ''}")
            body.append(el("g", el("title", tip),
                           el("rect", x=left, y=y + 5, width=right - left, height=ROW - 10, rx=3,
                              class_=f"bar bar-{kind}"),
                           el("text", label, x=right + 4, y=y + ROW / 2 + 4, class_="bar-label"),
                           class_="attempt", data_task=task.name, data_attempt=att.number, data_outcome=kind))
    for ts in getattr(record, "resumes", []) or []:
        if t0 <= ts <= t1:
            body.append(el("g", el("title", "the run was resumed here"),
                           el("line", x1=x(ts), y1=TOP - 4, x2=x(ts), y2=height - 20, class_="resume-line"),
                           el("text", "resumed", x=x(ts) + 3, y=height - 8, class_="resume-label"),
                           class_="resume-mark"))
    return document(WIDTH, height, body, label=f"timeline of run {record.run_id}", class_="timeline")
