"""Schedules: next fire times (in the schedule's zone and in UTC), last fire, misfires, pause/resume.

Schedules live in the serving process: with an orchestrator (the dashboard ``pyagent serve``
mounts at ``/ui``) the page reads its schedule triggers and can pause and resume them. A
read-only dashboard over a store shows what the store recorded of their ticks: the ticks that
fired and those skipped (missed, overlapping, paused), with why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pyagent_dashboard import schedules
from pyagent_dashboard.pages import Page
from pyagent_dashboard.pages.live import stream

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard


def version(dashboard: Dashboard, shown: list[schedules.ScheduleView]) -> str:
    return dashboard.fingerprint([
        (v.name, v.live, v.paused, str(v.last_fired), [str(t) for t in v.next_runs[:1]],
         None if v.recorded is None else (v.recorded.fired, v.recorded.skipped,
                                          [(t.run_id, t.status) for t in v.recorded.ticks]))
        for v in shown])


async def gather(dashboard: Dashboard) -> list[schedules.ScheduleView]:
    recorded = await schedules.recorded_ticks(await dashboard.source.store())
    return schedules.views(dashboard.schedules(), recorded)


def available(dashboard: Dashboard) -> bool:
    """Offered when the orchestrator has schedules, or a schedule trigger kind is installed."""
    if dashboard.schedules():
        return True
    from pyagent.plugin import get_runtime

    try:
        return "cron" in get_runtime().registry("triggers")
    except Exception:
        return False


def routes(dashboard: Dashboard) -> list[Any]:
    async def page(request: Request) -> Response:
        try:
            shown = await gather(dashboard)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read ticks from {dashboard.source.display_url}: {exc}")
        return dashboard.render(request, "schedules.html", shown=shown, live=dashboard.orchestrator is not None,
                                can_act=not dashboard.read_only, now=time.time(), window_days=schedules.WINDOW // 86400,
                                notice=dashboard.notices.get("schedules"), version=version(dashboard, shown),
                                z=schedules)

    async def page_stream(request: Request) -> Response:
        async def current() -> str:
            return version(dashboard, await gather(dashboard))

        return stream(dashboard, request, current)

    async def pause(request: Request) -> Response:
        return await act(request, "pause")

    async def resume(request: Request) -> Response:
        return await act(request, "resume")

    async def act(request: Request, action: str) -> Response:
        form = await dashboard.form(request)
        refused = dashboard.refusal(request, form)
        if refused is not None:
            return refused
        name = form.get("schedule", "")
        trigger = schedules.find(dashboard.schedules(), name)
        if trigger is None:
            return dashboard.error(request, 404, f"no schedule {name!r} in this process: schedules are paused "
                                                 "and resumed in the process that serves them")
        if action == "pause":
            trigger.pause()
            dashboard.notices["schedules"] = f"Paused {name}: its ticks are skipped until it is resumed."
        else:
            trigger.resume()
            dashboard.notices["schedules"] = f"Resumed {name}: it fires from its next tick."
        return RedirectResponse(dashboard.url(request, "/schedules"), status_code=303)

    return [Route("/schedules", page, methods=["GET"]),
            Route("/schedules/stream", page_stream, methods=["GET"]),
            Route("/schedules/pause", pause, methods=["POST"]),
            Route("/schedules/resume", resume, methods=["POST"])]


PAGE = Page(name="schedules", title="Schedules", path="/schedules", routes=routes, available=available)
