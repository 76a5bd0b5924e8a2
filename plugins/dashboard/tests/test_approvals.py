"""The approvals page over HTTP, in process: a dashboard given an orchestrator (no serving host)
over a SQLite store of real waiting runs. Who answers (a name, a configured identity), refusals
(unknown, answered already, read-only), escaping, and the run page's link. The same page in a
real browser against ``pyagent serve`` is in test_serve.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pyagent_dashboard import create_app

from pyagent import Approval
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.plugin import close_store, list_questions, open_store, read_run

pytestmark = pytest.mark.anyio
HTML = {"accept": "text/html"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def approve(claim: Any, ctx: Any) -> str:
    answer = await ctx.interrupt(f"Approve <b>{claim['who']}</b>'s refund?", schema=Approval)
    return "refunded" if answer.approved else "refused"


async def ask_anything(x: Any, ctx: Any) -> Any:
    return await ctx.interrupt("Anything to add?")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    pytest.importorskip("pyagent_sql", reason="the runs are recorded in SQLite (pyagent-sql)")
    return f"sqlite:///{tmp_path / 'questions.db'}"


@pytest.fixture
def orchestrator(store_url: str) -> Orchestrator:
    orch = Orchestrator(store=store_url)
    orch.add_workflow(Workflow(name="refund", checkpointing={"storage": store_url},
                               steps=[Task(name="approve", agent=approve)]))
    orch.add_workflow(Workflow(name="notes", checkpointing={"storage": store_url},
                               steps=[Task(name="ask", agent=ask_anything)]))
    return orch


async def waiting(orch: Orchestrator, workflow: str, run_id: str, who: str = "ada") -> str:
    result = await orch.workflows[workflow].run({"who": who}, run_id=run_id, wait_for_answers=False)
    assert result.status.value == "waiting"
    return run_id


async def questions(url: str, run_id: str) -> list[Any]:
    store = await open_store(url)
    try:
        return await list_questions(store, run_id=run_id, status=None)
    finally:
        await close_store(store)


async def status_of(url: str, run_id: str) -> str:
    store = await open_store(url)
    try:
        details = await read_run(store, run_id)
    finally:
        await close_store(store)
    assert details is not None
    return str(details.record.status.value)


async def until_status(url: str, run_id: str, want: str) -> None:
    with anyio.fail_after(20):
        while await status_of(url, run_id) != want:
            await anyio.sleep(0.05)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


class Client:
    """The app with its lifespan (background runs live in it), and an HTTP client on it."""

    def __init__(self, app: Any, **headers: str) -> None:
        self.app = app
        self.headers = {**HTML, **headers}

    async def __aenter__(self) -> httpx.AsyncClient:
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test",
                                        headers=self.headers)
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.aclose()
        await self.lifespan.__aexit__(*exc)


async def test_an_answer_is_recorded_with_the_name_given_and_the_run_goes_on(orchestrator: Orchestrator,
                                                                           store_url: str) -> None:
    run_id = await waiting(orchestrator, "refund", "refund-1", who="<script>x()</script>")
    async with Client(create_app(orchestrator=orchestrator, read_only=False)) as client:
        page = await client.get("/approvals")
        assert page.status_code == 200
        html = page.text
        assert '<a href="/approvals" aria-current="page">Approvals</a>' in html
        (q,) = await questions(store_url, run_id)
        # The question is text: its markup is escaped.
        assert "Approve &lt;b&gt;&lt;script&gt;x()&lt;/script&gt;&lt;/b&gt;&#39;s refund?" in html
        assert "<script>x()" not in html
        assert f'action="/approvals/{run_id}/{q.id}"' in html and 'name="answered_by"' in html
        # The run's own page says it waits, and links here.
        run_page = (await client.get(f"/runs/{run_id}")).text
        assert 'id="waiting-questions"' in run_page and f'href="/approvals?run={run_id}#q-{q.id}"' in run_page
        csrf = csrf_of(html)
        no_name = await client.post(f"/approvals/{run_id}/{q.id}",
                                    data={"csrf": csrf, "answer.approved": "true", "answered_by": "  "})
        assert no_name.status_code == 422 and "give your name" in no_name.text
        assert (await questions(store_url, run_id))[0].pending
        done = await client.post(f"/approvals/{run_id}/{q.id}", data={
            "csrf": csrf, "answer.approved": "true", "answer.comment": "loyal customer",
            "answered_by": "  Ada   Lovelace "})
        assert done.status_code == 303
        assert done.headers["location"] == f"/approvals?answered={q.id}&answered_run={run_id}"
        assert done.cookies.get("pyagent_dashboard_name") is not None  # remembered for the next form
        (answered,) = await questions(store_url, run_id)
        assert answered.answered_by == "Ada Lovelace"
        assert answered.answer == {"approved": True, "comment": "loyal customer"}
        await until_status(store_url, run_id, "completed")
        shown = (await client.get(done.headers["location"])).text
        assert "as <strong>Ada Lovelace</strong>" in shown and 'data-answered="' in shown
        assert 'value="Ada Lovelace"' not in shown  # no question left, so no form to prefill
        # Answering it again: refused, with who answered; nothing changes.
        again = await client.post(f"/approvals/{run_id}/{q.id}", data={
            "csrf": csrf, "answer.approved": "false", "answered_by": "Mallory"})
        assert again.status_code == 409 and "already answered by Ada Lovelace" in again.text
        assert (await questions(store_url, run_id))[0].answer == {"approved": True, "comment": "loyal customer"}
        unknown = await client.post(f"/approvals/{run_id}/{'0' * 32}", data={
            "csrf": csrf, "answer.approved": "false", "answered_by": "Mallory"})
        assert unknown.status_code == 404 and "has no question" in unknown.text


async def test_a_configured_identity_answers_without_a_name_field(orchestrator: Orchestrator, store_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = await waiting(orchestrator, "notes", "notes-1")
    second = await waiting(orchestrator, "notes", "notes-2")
    # A function of the request: a header an authenticating proxy sets.
    app = create_app(orchestrator=orchestrator, read_only=False,
                     identity=lambda request: request.headers.get("x-forwarded-user"))
    async with Client(app, **{"x-forwarded-user": "grace@example.com"}) as client:
        html = (await client.get("/approvals")).text
        assert 'name="answered_by"' not in html and "<strong data-identity>grace@example.com</strong>" in html
        (q,) = await questions(store_url, first)
        # A question without a schema: text as text, JSON as JSON.
        assert 'data-kind="free"' in html and "the question has no schema" in html
        done = await client.post(f"/approvals/{first}/{q.id}", data={
            "csrf": csrf_of(html), "answer": "ship it Monday", "answered_by": "someone else"})
        assert done.status_code == 303
        (answered,) = await questions(store_url, first)
        assert answered.answered_by == "grace@example.com" and answered.answer == "ship it Monday"
        await until_status(store_url, first, "completed")
    # A fixed name from the environment (what `pyagent serve` reads).
    monkeypatch.setenv("PYAGENT_DASHBOARD_IDENTITY", "on-call")
    async with Client(create_app(orchestrator=orchestrator, read_only=False)) as client:
        html = (await client.get(f"/approvals?run={second}")).text
        (q,) = await questions(store_url, second)
        assert f'data-question="{q.id}"' in html and "notes-1" not in html  # only that run's
        done = await client.post(f"/approvals/{second}/{q.id}", data={"csrf": csrf_of(html), "answer": '{"n": 2}',
                                                                       "filter_run": second})
        assert done.status_code == 303 and f"run={second}" in done.headers["location"]
        (answered,) = await questions(store_url, second)
        assert answered.answered_by == "on-call" and answered.answer == {"n": 2}
        await until_status(store_url, second, "completed")
    with pytest.raises(Exception, match="identity=42 must be a name"):
        create_app(orchestrator=orchestrator, identity=42)  # type: ignore[arg-type]


async def test_read_only_the_questions_show_without_forms_and_answers_are_refused(orchestrator: Orchestrator,
                                                                                    store_url: str) -> None:
    run_id = await waiting(orchestrator, "refund", "refund-ro")
    (q,) = await questions(store_url, run_id)
    async with Client(create_app(store_url)) as client:
        html = (await client.get("/approvals")).text
        assert f'data-question="{q.id}"' in html and "<form method=\"post\" action=\"/approvals/" not in html
        assert "data-answer-form" not in html and 'id="read-only-note"' in html
        # With the CSRF cookie's token (no form carries one here): refused all the same.
        refused = await client.post(f"/approvals/{run_id}/{q.id}", data={
            "csrf": client.cookies["pyagent_dashboard_csrf"], "answer.approved": "true", "answered_by": "Trudy"})
        assert refused.status_code == 403 and "read-only" in refused.text
        assert (await questions(store_url, run_id))[0].pending
        run_page = (await client.get(f"/runs/{run_id}")).text
        assert "See it on the Approvals page" in run_page
        # Nothing waits in another workflow: the filter says so.
        assert 'id="no-questions"' in (await client.get("/approvals?workflow=notes")).text


async def test_a_store_without_questions_says_so(tmp_path: Path) -> None:
    async with Client(create_app("memory://approvals-empty")) as client:
        html = (await client.get("/approvals")).text
        assert 'id="no-questions"' in html


async def test_an_answer_to_a_run_cancelled_since_the_page_was_shown_is_refused_and_says_why(
        orchestrator: Orchestrator, store_url: str) -> None:
    run_id = await waiting(orchestrator, "refund", "refund-x")
    async with Client(create_app(orchestrator=orchestrator, read_only=False)) as client:
        html = (await client.get("/approvals")).text
        (q,) = await questions(store_url, run_id)
        store = await open_store(store_url)
        try:  # cancelled from elsewhere (pyagent runs cancel): it waited, so no process held it
            assert await store.request_cancel(run_id, reason="withdrawn", now=q.asked_at + 1) == "cancelled"
        finally:
            await close_store(store)
        refused = await client.post(f"/approvals/{run_id}/{q.id}", data={
            "csrf": csrf_of(html), "answer.approved": "true", "answered_by": "Ada"})
    assert refused.status_code == 409
    assert "its run ended (cancelled) while the question was open" in refused.text
    (still,) = await questions(store_url, run_id)
    assert still.pending and still.answered_by is None
    assert await status_of(store_url, run_id) == "cancelled"
