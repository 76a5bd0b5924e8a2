"""Metrics over a window of runs, from the store's plain columns (no payload is decoded).

Per workflow: how many runs, the success rate (completed out of those that ended), duration
percentiles of the runs that ended, and runs started per hour; drawn as SVG charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from pyagent_dashboard.fmt import duration
from pyagent_dashboard.svg import document, el

WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600, "30d": 30 * 24 * 3600}
MAX_RUNS = 50_000
SERIES = 8  # colours in the stylesheet (series-0 .. series-7)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class WorkflowStats:
    name: str
    runs: int = 0
    ended: int = 0
    completed: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)
    per_hour: dict[int, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        return None if not self.ended else self.completed / self.ended

    def p(self, q: float) -> float | None:
        return percentile(self.durations, q)


def fold(headers: list[Any], since: float, now: float) -> list[WorkflowStats]:
    stats: dict[str, WorkflowStats] = {}
    for h in headers:
        s = stats.setdefault(h.workflow, WorkflowStats(h.workflow))
        s.runs += 1
        hour = int((h.started_at - since) // 3600)
        s.per_hour[hour] = s.per_hour.get(hour, 0) + 1
        if h.status in ("completed", "failed", "cancelled") and h.finished_at is not None:
            s.ended += 1
            s.completed += h.status == "completed"
            s.failed += h.status == "failed"
            s.durations.append(max(0.0, h.finished_at - h.started_at))
    return sorted(stats.values(), key=lambda s: (-s.runs, s.name))


def runs_per_hour_chart(stats: list[WorkflowStats], since: float, now: float) -> Markup:
    hours = max(1, math.ceil((now - since) / 3600))
    width, height, left, bottom, top = 980, 260, 48, 30, 14
    inner_w, inner_h = width - left - 16, height - top - bottom
    peak = max([c for s in stats for c in s.per_hour.values()] + [1])
    body: list[str] = []
    for i in range(5):
        value = peak * i / 4
        y = top + inner_h - inner_h * i / 4
        body.append(el("line", x1=left, y1=y, x2=width - 16, y2=y, class_="grid"))
        body.append(el("text", f"{value:.0f}" if peak >= 4 else f"{value:.1f}", x=left - 6, y=y + 4,
                       class_="axis", text_anchor="end"))
    step = max(1, hours // 12)
    for h in range(0, hours + 1, step):
        x = left + inner_w * h / hours
        label = f"-{hours - h}h" if hours - h else "now"
        body.append(el("text", label, x=x, y=height - 10, class_="axis", text_anchor="middle"))
    for index, s in enumerate(stats[:SERIES]):
        points = []
        for h in range(hours):
            x = left + inner_w * (h + 0.5) / hours
            y = top + inner_h - inner_h * s.per_hour.get(h, 0) / peak
            points.append(f"{x:.1f},{y:.1f}")
        body.append(el("g", el("title", f"{s.name}: {s.runs} runs"),
                       el("polyline", points=" ".join(points), class_=f"series series-{index}"),
                       data_series=s.name))
    return document(width, height, body, label="runs started per hour, per workflow", class_="chart")


def success_chart(stats: list[WorkflowStats]) -> Markup:
    row, left, width = 30, 220, 980
    height = 20 + row * max(len(stats), 1)
    inner = width - left - 80
    body: list[str] = []
    for i, s in enumerate(stats):
        y = 10 + i * row
        rate = s.success_rate
        body.append(el("text", s.name[:30], x=left - 8, y=y + 18, class_="task-label", text_anchor="end"))
        body.append(el("rect", x=left, y=y + 5, width=inner, height=row - 10, class_="bar-track"))
        if rate is not None:
            body.append(el("g", el("title", f"{s.name}: {s.completed} of {s.ended} ended runs completed"),
                           el("rect", x=left, y=y + 5, width=max(inner * rate, 1), height=row - 10,
                              class_="bar bar-ok"),
                           data_rate=f"{rate:.4f}"))
        body.append(el("text", "—" if rate is None else f"{rate:.0%}", x=left + inner + 8, y=y + 18,
                       class_="bar-label"))
    return document(width, height, body, label="success rate per workflow", class_="chart")


def duration_chart(stats: list[WorkflowStats]) -> Markup:
    quantiles = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    row, left, width = 54, 220, 980
    height = 24 + row * max(len(stats), 1)
    inner = width - left - 110
    peak = max([s.p(0.99) or 0.0 for s in stats] + [1e-3])
    body: list[str] = []
    for i, s in enumerate(stats):
        y = 10 + i * row
        body.append(el("text", s.name[:30], x=left - 8, y=y + 28, class_="task-label", text_anchor="end"))
        for j, (label, q) in enumerate(quantiles):
            value = s.p(q)
            yy = y + 4 + j * 15
            if value is None:
                continue
            body.append(el("g", el("title", f"{s.name} {label}: {duration(value)}"),
                           el("rect", x=left, y=yy, width=max(inner * value / peak, 1), height=12,
                              class_=f"bar bar-{label}"),
                           el("text", f"{label} {duration(value)}", x=left + max(inner * value / peak, 1) + 6,
                              y=yy + 10, class_="bar-label")))
    return document(width, height, body, label="run duration percentiles per workflow", class_="chart")
