"""Metrics: success rate, duration percentiles and runs per hour, per workflow, over a window."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyagent_dashboard import metrics
from pyagent_dashboard.pages import Page

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard


def routes(dashboard: Dashboard) -> list[Any]:
    async def page(request: Request) -> Response:
        window = request.query_params.get("window", "24h")
        if window not in metrics.WINDOWS:
            window = "24h"
        now = time.time()
        since = now - metrics.WINDOWS[window]
        try:
            headers = await dashboard.source.headers_since(since, metrics.MAX_RUNS + 1)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read runs from {dashboard.source.display_url}: {exc}")
        truncated = len(headers) > metrics.MAX_RUNS
        stats = metrics.fold(headers[:metrics.MAX_RUNS], since, now)
        return dashboard.render(
            request, "metrics.html", stats=stats, window=window, windows=list(metrics.WINDOWS),
            truncated=truncated, max_runs=metrics.MAX_RUNS, total=min(len(headers), metrics.MAX_RUNS),
            per_hour=metrics.runs_per_hour_chart(stats, since, now),
            success=metrics.success_chart(stats), durations=metrics.duration_chart(stats))

    return [Route("/metrics", page, methods=["GET"])]


PAGE = Page(name="metrics", title="Metrics", path="/metrics", routes=routes)
