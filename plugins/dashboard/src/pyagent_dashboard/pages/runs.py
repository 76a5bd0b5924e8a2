"""Runs: the newest first, filtered by workflow, status and time, a page at a time, live."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyagent_dashboard.data import PAGE_SIZES, STATUSES, RunFilters, RunsPage
from pyagent_dashboard.pages import Page
from pyagent_dashboard.pages.live import stream

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard


def version(dashboard: Dashboard, page: RunsPage) -> str:
    return dashboard.fingerprint(page.has_older, [
        (r.run_id, r.status.value, r.finished_at, r.tasks_completed,
         page.owners[r.run_id].owner if r.run_id in page.owners else None) for r in page.rows])


def routes(dashboard: Dashboard) -> list[Any]:
    async def runs(request: Request) -> Response:
        filters = RunFilters.parse(request.query_params)
        try:
            page = await dashboard.source.page(filters)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read runs from {dashboard.source.display_url}: {exc}")
        names = sorted({*dashboard.workflow_names, *(r.workflow for r in page.rows),
                        *([filters.workflow] if filters.workflow else [])})
        return dashboard.render(request, "runs.html", page=page, f=filters, statuses=STATUSES, now=time.time(),
                                page_sizes=PAGE_SIZES, workflow_names=names, version=version(dashboard, page))

    async def runs_stream(request: Request) -> Response:
        filters = RunFilters.parse(request.query_params)

        async def current() -> str:
            return version(dashboard, await dashboard.source.page(filters))

        return stream(dashboard, request, current)

    return [Route("/runs", runs, methods=["GET"]), Route("/runs/stream", runs_stream, methods=["GET"])]


PAGE = Page(name="runs", title="Runs", path="/runs", routes=routes)
