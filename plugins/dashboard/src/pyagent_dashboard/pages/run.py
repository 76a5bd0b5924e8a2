"""One run: its timeline, its graph, input and outputs, errors, the audit trail, and actions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pyagent.plugin import RunDetails, TaskStatus
from pyagent_dashboard import fmt, graph, timeline
from pyagent_dashboard.pages import Page
from pyagent_dashboard.pages.live import stream

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard

RESUMABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED)
CANCELLABLE = (TaskStatus.RUNNING, TaskStatus.PENDING, TaskStatus.WAITING)
#: The reason a run cancelled from the dashboard gives (its error says it).
CANCEL_REASON = "cancelled from the dashboard"


@dataclass
class Action:
    """Whether an action is offered for this run here, and if not, why (None: nothing to say)."""

    possible: bool
    why_not: str | None = None


@dataclass
class Queue:
    """What the store says about cancelling the run: whether it is a run queue (a cancel request
    there reaches whichever process runs the run), and the run's cancel request if it has one."""

    available: bool = False
    asked: str | None = None


async def queue_of(dashboard: Dashboard, details: RunDetails) -> Queue:
    if not await dashboard.source.is_queue():
        return Queue()
    return Queue(True, await dashboard.source.cancel_request(details.record.run_id))


def _live_owner(details: RunDetails) -> str | None:
    lease = details.lease
    return lease.owner if lease is not None and not lease.expired(time.time()) else None


def cancel_action(dashboard: Dashboard, details: RunDetails, queue: Queue) -> Action:
    rec = details.record
    if rec.status not in CANCELLABLE or dashboard.read_only:
        return Action(False)
    if dashboard.running_here(rec.workflow, rec.run_id):
        return Action(True)
    owner = _live_owner(details)
    if queue.available:
        if queue.asked is not None:  # asked already: its owner has not reached a task boundary yet
            return Action(False, f"Cancel requested ({queue.asked}): {owner or 'the process running it'} stops "
                                 "the run at its next task boundary.")
        return Action(True)
    if rec.status is not TaskStatus.RUNNING:
        return Action(False)
    if owner is not None:
        return Action(False, f"This run is going on in another process ({owner}), and its store is not a run "
                             "queue, so no cancel can reach that process from here: cancel it there (its "
                             "dashboard, or workflow.cancel), or keep runs in a store with the run queue "
                             "(pyagent-sql).")
    return Action(False, "This run is not going on in this process, so it cannot be cancelled from here.")


def resume_action(dashboard: Dashboard, details: RunDetails, queue: Queue) -> Action:
    rec = details.record
    lease = details.lease
    abandoned = rec.status is TaskStatus.RUNNING and (lease is None or lease.expired(time.time()))
    if dashboard.read_only or not (rec.status in RESUMABLE or abandoned):
        return Action(False)
    if abandoned and dashboard.running_here(rec.workflow, rec.run_id):
        return Action(False)
    if details.state is None:
        return Action(False, f"This run cannot be resumed: {details.state_error}")
    if dashboard.workflow(rec.workflow) is None:
        return Action(False, f"Resuming needs the definition of workflow {rec.workflow!r}: give the "
                             "dashboard an orchestrator (or workflows) that has it.")
    if queue.asked is not None:
        # The queue keeps a cancel request for good: a resumed run would be stopped again at its
        # first task boundary, and no replica would take it over.
        return Action(False, f"This run was asked to cancel ({queue.asked}), and its store keeps that "
                             "request: resumed, it would be stopped again at its first task boundary. "
                             "Start it anew instead.")
    return Action(True)


def cancel_notice(outcome: str, owner: str | None) -> str:
    """What the page says after asking the store to cancel a run, by the store's answer."""
    if outcome == "cancelled":
        return "Cancelled from the dashboard: no process was running it (it was queued, waiting, or its " \
               "process had stopped), so it was cancelled at once."
    if outcome == "requested":
        return f"Cancel requested from the dashboard: {owner or 'the process running it'} stops the run at " \
               "its next task boundary (tasks running then finish first)."
    return "The run had already ended: nothing was cancelled."


def definition_graph(dashboard: Dashboard, details: RunDetails) -> tuple[Any, list[tuple[str, Any]], bool]:
    """The run's graph, the nested workflows' graphs, and whether the definition was known."""
    rec = details.record
    wf = dashboard.workflow(rec.workflow)
    if wf is None:
        return graph.draw(graph.from_records(rec.tasks, rec.workflow)), [], False
    g = graph.from_definition(wf, rec.tasks)
    nested = []
    seen = {id(wf)}
    queue = list(g.nested)
    while queue and len(nested) < 8:
        task_name, sub = queue.pop(0)
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        sub_graph = graph.from_definition(sub, [])
        nested.append((f"{task_name} runs workflow {sub.name}", graph.draw(sub_graph)))
        queue += sub_graph.nested
    return graph.draw(g), nested, True


def transcripts(details: RunDetails) -> list[tuple[str, list[dict[str, Any]]]]:
    """Team transcripts kept in task outputs (a team result saved as data: ``{"transcript": [...]}``)."""
    out = []
    if details.state is None:
        return out
    for name, task in details.state.tasks.items():
        value = task.output
        if isinstance(value, dict) and isinstance(value.get("transcript"), list):
            messages = [m for m in value["transcript"] if isinstance(m, dict) and "content" in m]
            if messages:
                out.append((name, messages))
    return out


async def waiting_on(dashboard: Dashboard, details: RunDetails) -> tuple[list[Any], str | None]:
    """The questions a waiting run (or a waiting task of it) asks, or why they cannot be read."""
    rec = details.record
    waiting = TaskStatus.WAITING.value
    if fmt.status_of(rec.status) != waiting and not any(fmt.status_of(t.status) == waiting for t in rec.tasks):
        return [], None
    try:
        return await dashboard.source.questions(run_id=rec.run_id, limit=None), None
    except Exception as exc:
        return [], f"The questions this run waits on cannot be read: {exc}"


def version(dashboard: Dashboard, details: RunDetails | None) -> str:
    if details is None:
        return "missing"
    rec, lease = details.record, details.lease
    return dashboard.fingerprint(rec.status.value, rec.finished_at, rec.tasks_completed, details.checkpoints,
                                 [(t.name, t.status.value, len(t.attempts)) for t in rec.tasks],
                                 None if lease is None else (lease.owner, lease.expired(time.time())))


def routes(dashboard: Dashboard) -> list[Any]:
    async def detail(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            details = await dashboard.source.details(run_id)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read run {run_id!r}: {exc}")
        if details is None:
            return dashboard.error(request, 404, f"no run {run_id!r} in {dashboard.source.display_url}")
        drawn, nested, known = definition_graph(dashboard, details)
        rec = details.record
        try:
            queue = await queue_of(dashboard, details)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read run {run_id!r}'s cancel request: {exc}")
        questions, questions_error = await waiting_on(dashboard, details)
        denials = [a for a in rec.audit if a.kind == "capability.denied"]
        policy = [a for a in rec.audit if a.kind != "capability.denied"]
        return dashboard.render(
            request, "run.html", d=details, rec=rec, state=details.state,
            timeline=timeline.draw(rec), graph=drawn, nested=nested, definition_known=known,
            cancel=cancel_action(dashboard, details, queue), resume=resume_action(dashboard, details, queue),
            trigger=fmt.trigger_kind(rec), denials=denials, policy=policy,
            transcripts=transcripts(details), notice=dashboard.notices.get(run_id),
            questions=questions, questions_error=questions_error,
            version=version(dashboard, details), now=time.time())

    async def detail_stream(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        async def current() -> str:
            return version(dashboard, await dashboard.source.details(run_id))

        return stream(dashboard, request, current)

    async def acted_on(request: Request, run_id: str) -> Any:
        """The run an action names, or the response refusing the action (no token, no run)."""
        form = await dashboard.form(request)
        refused = dashboard.refusal(request, form)
        if refused is not None:
            return refused
        details = await dashboard.source.details(run_id)
        if details is None:
            return dashboard.error(request, 404, f"no run {run_id!r}")
        return details

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        details = await acted_on(request, run_id)
        if isinstance(details, Response):
            return details
        queue = await queue_of(dashboard, details)
        action = cancel_action(dashboard, details, queue)
        if not action.possible:
            return dashboard.error(request, 409, action.why_not or f"run {run_id!r} is not going on")
        rec = details.record
        wf = dashboard.workflow(rec.workflow)
        if wf is not None and dashboard.running_here(rec.workflow, run_id):
            if wf.cancel(run_id, reason=CANCEL_REASON):
                dashboard.notices[run_id] = "Cancelled from the dashboard."
                return RedirectResponse(dashboard.url(request, f"/runs/{run_id}"), status_code=303)
            if not queue.available:  # it ended meanwhile
                return RedirectResponse(dashboard.url(request, f"/runs/{run_id}"), status_code=303)
        outcome = await dashboard.source.request_cancel(run_id, CANCEL_REASON)
        if outcome is None:
            return dashboard.error(request, 404, f"no run {run_id!r} in {dashboard.source.display_url}")
        dashboard.notices[run_id] = cancel_notice(outcome, _live_owner(details))
        return RedirectResponse(dashboard.url(request, f"/runs/{run_id}"), status_code=303)

    async def resume(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        details = await acted_on(request, run_id)
        if isinstance(details, Response):
            return details
        action = resume_action(dashboard, details, await queue_of(dashboard, details))
        wf = dashboard.workflow(details.record.workflow)
        if not action.possible or wf is None:
            return dashboard.error(request, 409, action.why_not or f"run {run_id!r} cannot be resumed")
        url = dashboard.source.url
        dashboard.notices[run_id] = "Resumed from the dashboard."
        if dashboard.serving_here():
            # One of the serving host's runs: bounded by max_running, checkpointed at shutdown.
            def finished(_: str, result: Any) -> None:
                dashboard.notices[run_id] = (
                    f"Resumed from the dashboard: the run {result.status.value}." if result is not None
                    else "Resuming stopped before the run went on (another process owns it, or the "
                         "server is shutting down): see the server's log.")

            try:
                dashboard.host.resume(wf, run_id, on_finish=finished)
            except Exception as exc:
                dashboard.notices.pop(run_id, None)
                return dashboard.error(request, 409, f"run {run_id!r} cannot be resumed now: {exc}")
            return RedirectResponse(dashboard.url(request, f"/runs/{run_id}"), status_code=303)

        async def go() -> None:
            try:
                result = await wf.resume_from(run_id, storage=url)
            except Exception as exc:
                dashboard.notices[run_id] = f"Resuming failed: {type(exc).__name__}: {exc}"
            else:
                dashboard.notices[run_id] = f"Resumed from the dashboard: the run {result.status.value}."

        dashboard.spawn(go)
        return RedirectResponse(dashboard.url(request, f"/runs/{run_id}"), status_code=303)

    return [Route("/runs/{run_id}", detail, methods=["GET"]),
            Route("/runs/{run_id}/stream", detail_stream, methods=["GET"]),
            Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
            Route("/runs/{run_id}/resume", resume, methods=["POST"])]


PAGE = Page(name="run", title="Run", path="/runs", routes=routes, nav=False)
