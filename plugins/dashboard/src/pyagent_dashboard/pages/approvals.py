"""Approvals: the questions runs wait on (``ctx.interrupt``), each with a form to answer it.

Each pending question shows its text, run, task, when it was asked and its deadline, and a
form generated from its answer's JSON schema (:mod:`pyagent_dashboard.forms`). Answering is
a POST with the CSRF token; the answer goes through the kernel, which checks it against the
schema and records it with ``answered_by`` before the run goes on (through the serving host,
which wakes the run at once). A refused answer is shown in the form, and nothing is recorded.
Read-only, the page lists the questions without forms and refuses answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pyagent.plugin import (
    AnswerValidationError,
    ConfigurationError,
    Interrupt,
    InterruptAnsweredError,
    InterruptNotFoundError,
)
from pyagent_dashboard import forms
from pyagent_dashboard.data import QUESTIONS_SHOWN
from pyagent_dashboard.pages import Page
from pyagent_dashboard.pages.live import stream

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard


@dataclass
class QuestionView:
    """One pending question as the page shows it: its form, and what was submitted if refused."""

    q: Interrupt
    form: forms.Field
    submitted: dict[str, str] | None = None
    problems: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.q.id[:12]

    def value(self, f: forms.Field) -> str:
        """The text a field shows: what was submitted (after a refusal), else the schema's default."""
        if self.submitted is not None:
            return self.submitted.get(f.name, "")
        return f.initial()

    def ticked(self, f: forms.Field, i: int) -> bool:
        if self.submitted is not None:
            return bool(self.submitted.get(f"{f.name}[{i}]"))
        return f.chosen(i)

    @property
    def refused(self) -> bool:
        return bool(self.problems or self.general)


@dataclass
class Filters:
    run: str | None = None
    workflow: str | None = None

    @classmethod
    def parse(cls, params: Any) -> Filters:
        return cls(run=(params.get("run") or "").strip() or None,
                   workflow=(params.get("workflow") or "").strip() or None)

    def query(self) -> dict[str, str | None]:
        return {"run": self.run, "workflow": self.workflow}


def version(dashboard: Dashboard, questions: list[Interrupt] | None) -> str:
    return dashboard.fingerprint(None if questions is None else [(q.id, q.status) for q in questions])


def deadline_text(q: Interrupt, now: float) -> str:
    """``in 58 min`` / ``passed 3 min ago`` (the timeout is applied by the process holding the run)."""
    from pyagent_dashboard.fmt import duration

    if q.deadline is None:
        return "none"
    left = q.deadline - now
    return f"in {duration(left)}" if left >= 0 else f"passed {duration(-left)} ago"


def no_longer_pending(q: Interrupt) -> str:
    """Why question ``q`` takes no answer now (as the kernel would refuse it)."""
    from pyagent_dashboard.fmt import when

    at = f" at {when(q.answered_at)}" if q.answered_at is not None else ""
    how = {"answered": f"was already answered by {q.answered_by or 'someone'}{at}",
           "expired": f"expired{at} (nobody answered it in time)",
           "escalated": f"timed out{at} and was escalated: answer the question it escalated to"}.get(
               q.status, f"is {q.status}")
    return f"the question {q.question!r} of run {q.run_id!r} {how}"


def routes(dashboard: Dashboard) -> list[Any]:
    async def pending(f: Filters) -> tuple[list[Interrupt] | None, str | None]:
        try:
            return await dashboard.source.questions(run_id=f.run, workflow=f.workflow,
                                                    limit=QUESTIONS_SHOWN + 1), None
        except ConfigurationError as exc:  # the store keeps no questions
            return None, str(exc)

    async def show(request: Request, f: Filters, *, refused: QuestionView | None = None, status_code: int = 200,
                   notice: str | None = None) -> Response:
        try:
            questions, unsupported = await pending(f)
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read questions from {dashboard.source.display_url}: {exc}")
        views = []
        for q in (questions or [])[:QUESTIONS_SHOWN]:
            if refused is not None and q.id == refused.q.id:
                views.append(refused)
            else:
                views.append(QuestionView(q, forms.fields_of(q.schema)))
        answered = await answered_notice(request)
        return dashboard.render(
            request, "approvals.html", status_code=status_code, views=views, f=f, unsupported=unsupported,
            more=questions is not None and len(questions) > QUESTIONS_SHOWN, shown_max=QUESTIONS_SHOWN,
            can_answer=not dashboard.read_only, identity=dashboard.configured_identity(request),
            name=dashboard.remembered_name(request), answered=answered, notice=notice, now=time.time(),
            deadline=deadline_text, version=version(dashboard, questions))

    async def answered_notice(request: Request) -> Interrupt | None:
        """The question just answered from this browser (``?answered=ID&answered_run=RUN``), as recorded."""
        qid, run_id = request.query_params.get("answered"), request.query_params.get("answered_run")
        if not qid or not run_id:
            return None
        try:
            found = await dashboard.source.questions(run_id=run_id, status=None, limit=None)
        except Exception:
            return None
        return next((q for q in found if q.id == qid and not q.pending), None)

    async def page(request: Request) -> Response:
        return await show(request, Filters.parse(request.query_params))

    async def page_stream(request: Request) -> Response:
        f = Filters.parse(request.query_params)

        async def current() -> str:
            return version(dashboard, (await pending(f))[0])

        return stream(dashboard, request, current)

    async def answer(request: Request) -> Response:
        run_id, qid = request.path_params["run_id"], request.path_params["interrupt_id"]
        submitted = await dashboard.form(request)
        refused = dashboard.refusal(request, submitted)
        if refused is not None:
            return refused
        f = Filters(run=submitted.get("filter_run") or None, workflow=submitted.get("filter_workflow") or None)
        try:
            asked = await dashboard.source.questions(run_id=run_id, limit=None)
        except ConfigurationError as exc:
            return dashboard.error(request, 409, str(exc))
        except Exception as exc:
            return dashboard.error(request, 503, f"cannot read questions from {dashboard.source.display_url}: {exc}")
        q = next((q for q in asked if q.id == qid), None)
        who, who_problem = dashboard.answerer(request, submitted)
        if q is None:  # not a question of this run, or no longer pending: nothing to record
            try:
                every = await dashboard.source.questions(run_id=run_id, status=None, limit=None)
            except Exception as exc:
                return dashboard.error(request, 503, f"cannot read questions from {dashboard.source.display_url}: "
                                                     f"{exc}")
            known = next((k for k in every if k.id == qid), None)
            if known is None:
                return dashboard.error(request, 404, f"run {run_id!r} in {dashboard.source.display_url} has no "
                                                     f"question {qid!r}: answer one of those this page lists")
            return await show(request, f, status_code=409, notice=f"Not answered: {no_longer_pending(known)}.")
        view = QuestionView(q, forms.fields_of(q.schema), submitted=submitted)
        value, problems = forms.answer_of(view.form, submitted)
        if who_problem is not None:
            problems.setdefault("answered_by", []).append(who_problem)
        if problems:
            view.problems = problems
            return await show(request, f, refused=view, status_code=422)
        assert who is not None
        try:
            await dashboard.answer(run_id, qid, value, who)
        except AnswerValidationError as exc:
            view.problems, view.general = forms.place_problems(view.form, list(exc.errors or [str(exc)]))
            return await show(request, f, refused=view, status_code=422)
        except InterruptNotFoundError as exc:
            return dashboard.error(request, 404, str(exc))
        except InterruptAnsweredError as exc:
            return await show(request, f, status_code=409, notice=f"Not answered: {exc}.")
        response = RedirectResponse(dashboard.url(request, "/approvals", **f.query(), answered=qid,
                                                  answered_run=run_id), status_code=303)
        if dashboard.configured_identity(request) is None and who != dashboard.remembered_name(request):
            from pyagent_dashboard.app import NAME_COOKIE

            response.set_cookie(NAME_COOKIE, who, max_age=180 * 86400, httponly=True, samesite="strict",
                                path=dashboard.base(request) or "/", secure=request.url.scheme == "https")
        return response

    return [Route("/approvals", page, methods=["GET"]),
            Route("/approvals/stream", page_stream, methods=["GET"]),
            Route("/approvals/{run_id}/{interrupt_id}", answer, methods=["POST"])]


PAGE = Page(name="approvals", title="Approvals", path="/approvals", routes=routes)
