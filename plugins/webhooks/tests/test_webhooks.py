"""Webhooks on a real uvicorn server on 127.0.0.1 (ephemeral port), driven by an HTTP client."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from pyagent import ConfigurationError, PluginNotInstalledError
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.testing import CountingAgents

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@asynccontextmanager
async def served(orch: Orchestrator, **options: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with orch.serving(port=0, **options) as host:
        assert host.urls and host.urls[0].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=host.urls[0], timeout=10) as client:
            yield host, client


async def until(client: httpx.AsyncClient, run_id: str, status: str,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            body = (await client.get(f"/runs/{run_id}", headers=headers)).json()
            if body.get("status") == status:
                return dict(body)
            await anyio.sleep(0.01)


def ci(agents: CountingAgents | None = None) -> Workflow:
    fn = (agents or CountingAgents())["Build"]
    return Workflow(name="ci", steps=[Task(name="Build", agent=lambda body: fn(body["ref"]))])


async def test_a_post_starts_a_run_and_its_status_is_readable(hook_runtime: Any) -> None:
    orch = Orchestrator()
    orch.on_webhook("/api/trigger", workflow=ci())
    async with served(orch) as (_, client):
        r = await client.post("/api/trigger", json={"ref": "main"})
        assert r.status_code == 202
        body = r.json()
        assert set(body) == {"run_id", "status_url"} and r.headers["location"] == body["status_url"]
        done = await until(client, body["run_id"], "completed")
        assert done["output"] == "main>Build" and (done["tasks_completed"], done["tasks_total"]) == (1, 1)
        assert done["error"] is None and done["workflow"] == "ci"
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert (await client.get("/runs/nope")).status_code == 404


async def test_every_error_code(hook_runtime: Any) -> None:
    orch = Orchestrator()
    orch.on_webhook("/small", workflow=ci(), max_body=64)
    async with served(orch) as (_, client):
        bad = await client.post("/small", content=b'{"ref": ', headers=JSON)
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"] and "line 1" in bad.json()["error"]
        assert (await client.post("/elsewhere", json={})).status_code == 404
        wrong = await client.get("/small")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        big = await client.post("/small", json={"ref": "x" * 100})
        assert big.status_code == 413 and "64" in big.json()["error"]
        async def chunks() -> AsyncIterator[bytes]:
            for piece in (b"{}", b" " * 40, b" " * 40):
                yield piece

        chunked = await client.post("/small", content=chunks(), headers=JSON)
        assert chunked.status_code == 413  # no Content-Length: counted while reading
        form = await client.post("/small", data={"ref": "x"})
        assert form.status_code == 415 and "application/json" in form.json()["error"]
        assert (await client.post("/small", content=b"{}")).status_code == 415  # no content type
        vendor = await client.post("/small", content=b'{"ref": "v"}', headers={"content-type": "application/vnd.x+json"})
        assert vendor.status_code == 202


async def test_too_many_waiting_runs_get_429_with_retry_after(hook_runtime: Any) -> None:
    gate = anyio.Event()

    async def hold(body: Any) -> Any:
        await gate.wait()
        return body

    orch = Orchestrator()
    orch.on_webhook("/q", workflow=Workflow(name="q", steps=[Task(name="H", agent=hold)]), max_pending=2)
    async with served(orch, max_running=1) as (host, client):
        codes = [(await client.post("/q", json={"n": n})).status_code for n in range(3)]
        await anyio.wait_all_tasks_blocked()
        assert codes == [202, 202, 202] and host.in_flight == 1 and host.waiting == 2
        refused = await client.post("/q", json={"n": 3})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        assert "max_pending=2" in refused.json()["error"]
        gate.set()


async def test_hmac_signatures_are_checked_over_the_raw_body(hook_runtime: Any) -> None:
    agents = CountingAgents()
    orch = Orchestrator()
    orch.on_webhook("/github", workflow=ci(agents), secret="s3cret", auth="hmac")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    async with served(orch) as (_, client):
        ok = await client.post("/github", content=body, headers={**JSON, "X-Signature-256": sign(b"s3cret", body)})
        assert ok.status_code == 202
        await until(client, ok.json()["run_id"], "completed")
        for header in (sign(b"wrong", body), sign(b"s3cret", body + b" "), "sha1=" + "0" * 40, "sha256=zz", None):
            headers = {**JSON, **({"X-Signature-256": header} if header else {})}
            refused = await client.post("/github", content=body, headers=headers)
            assert refused.status_code == 401 and "signature" in refused.json()["error"]
    assert agents.calls == {"Build": 1}


async def test_bearer_tokens_guard_the_webhook_and_its_runs_status(hook_runtime: Any) -> None:
    orch = Orchestrator()
    orch.on_webhook("/jobs", workflow=ci(), auth="bearer", secret="t0ken")
    async with served(orch) as (_, client):
        assert (await client.post("/jobs", json={"ref": "a"})).status_code == 401
        wrong = await client.post("/jobs", json={"ref": "a"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": "Bearer t0ken"}
        ok = await client.post("/jobs", json={"ref": "a"}, headers=auth)
        assert ok.status_code == 202
        status_url = ok.json()["status_url"]
        assert (await client.get(status_url)).status_code == 401
        with anyio.fail_after(10):
            while (await client.get(status_url, headers=auth)).json()["status"] != "completed":
                await anyio.sleep(0.01)


async def test_an_idempotency_key_starts_one_run_even_across_a_restart(hook_runtime: Any, store_url: str) -> None:
    agents = CountingAgents()
    orch = Orchestrator(store=store_url)
    orch.on_webhook("/pay", workflow=ci(agents))
    key = {"Idempotency-Key": "pay-42"}
    async with served(orch) as (_, client):
        first = await client.post("/pay", json={"ref": "x"}, headers=key)
        again = await client.post("/pay", json={"ref": "x"}, headers=key)
        other = await client.post("/pay", json={"ref": "y"}, headers={"Idempotency-Key": "pay-43"})
        assert first.json()["run_id"] == again.json()["run_id"] != other.json()["run_id"]
        assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
        await until(client, first.json()["run_id"], "completed")
        await until(client, other.json()["run_id"], "completed")
    async with served(orch) as (_, client):  # a new server on the same store
        replay = await client.post("/pay", json={"ref": "x"}, headers=key)
        assert replay.status_code == 202 and replay.json()["run_id"] == first.json()["run_id"]
        assert (await client.get(replay.json()["status_url"])).json()["status"] == "completed"
    assert agents.calls == {"Build": 2}


async def test_shutting_down_answers_503_while_runs_in_flight_finish(hook_runtime: Any) -> None:
    gate = anyio.Event()

    async def hold(body: Any) -> Any:
        await gate.wait()
        return "held"

    orch = Orchestrator()
    orch.on_webhook("/h", workflow=Workflow(name="h", steps=[Task(name="H", agent=hold)]))
    seen: dict[str, Any] = {}
    # Nested on purpose: the server drains when the inner block exits, while the checks still run.
    async with httpx.AsyncClient(timeout=10) as client, anyio.create_task_group() as tg:  # noqa: SIM117
        async with orch.serving(port=0, grace=10) as host:
            client.base_url = httpx.URL(host.urls[0])
            run_id = (await client.post("/h", json={})).json()["run_id"]
            await until(client, run_id, "running")

            async def during_drain() -> None:
                with anyio.fail_after(10):
                    while host.accepting:
                        await anyio.sleep(0.01)
                late = await client.post("/h", json={})
                seen["post"] = (late.status_code, late.headers.get("retry-after"))
                seen["health"] = (await client.get("/healthz")).status_code
                seen["status"] = (await client.get(f"/runs/{run_id}")).json()["status"]
                gate.set()

            tg.start_soon(during_drain)
        # leaving the block drained the server: the held run was let finish
    assert seen == {"post": (503, "5"), "health": 503, "status": "running"}
    assert [r.status.value for r in orch.get_history()] == ["completed"]


async def test_the_app_mounts_in_another_starlette_app(hook_runtime: Any) -> None:
    from pyagent_webhooks import webhook_app
    from starlette.applications import Starlette
    from starlette.routing import Mount

    orch = Orchestrator()
    orch.on_webhook("/api/trigger", workflow=ci())
    parent = Starlette(routes=[Mount("/hooks", app=webhook_app(orch, lifespan=False))])
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/hooks/api/trigger", json={"ref": "m"})).status_code == 503  # not serving
        async with orch.serving(port=None):
            r = await client.post("/hooks/api/trigger", json={"ref": "m"})
            assert r.status_code == 202 and r.json()["status_url"].startswith("/hooks/runs/")
            with anyio.fail_after(10):
                while (done := (await client.get(r.json()["status_url"])).json())["status"] != "completed":
                    await anyio.sleep(0.01)
            assert done["output"] == "m>Build"


async def test_the_server_listens_on_the_address_it_is_given_and_refuses_a_taken_port(hook_runtime: Any) -> None:
    orch = Orchestrator()
    orch.on_webhook("/x", workflow=ci())
    async with orch.serving(port=0) as host:
        port = int(host.urls[0].rsplit(":", 1)[1])
        other = Orchestrator()
        other.on_webhook("/x", workflow=ci())
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with other.serving(port=port):
                pass


def test_bad_webhooks_are_refused_when_made(hook_runtime: Any) -> None:
    orch = Orchestrator()
    wf = ci()
    for kwargs, message in [
        ({"path": "api"}, "starting with '/'"),
        ({"path": "/runs/x"}, "reserved"),
        ({"path": "/a", "auth": "basic", "secret": "s"}, "auth='basic'"),
        ({"path": "/a", "auth": "hmac"}, "needs secret"),
        ({"path": "/a", "max_body": 0}, "max_body"),
    ]:
        path = kwargs.pop("path")
        with pytest.raises(ConfigurationError, match=message):
            orch.on_webhook(path, workflow=wf, **kwargs)
    orch.on_webhook("/a", workflow=wf)
    with pytest.raises(ConfigurationError, match="exists already"):
        orch.on_webhook("/a/", workflow=wf)


def test_without_the_plugin_the_error_names_it(bare_runtime: Any) -> None:
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-webhooks"):
        Orchestrator().on_webhook("/x", workflow=ci())


def test_under_trio_the_server_says_it_needs_asyncio(hook_runtime: Any) -> None:
    orch = Orchestrator()
    orch.on_webhook("/x", workflow=ci())

    async def go() -> None:
        async with orch.serving(port=0):
            pass

    with pytest.raises(ConfigurationError, match="needs asyncio"):
        anyio.run(go, backend="trio")


# -- answering the questions runs ask people -------------------------------------------------------


def approval(asked: list[str]) -> Workflow:
    async def ask(body: Any, ctx: Any) -> str:
        asked.append(body["ref"])
        answer = await ctx.interrupt(f"Deploy {body['ref']}?", schema=bool)
        return f"{body['ref']}: {'deployed' if answer else 'held'}"

    return Workflow(name="deploy", steps=[Task(name="Approve", agent=ask)])


async def questions_of(client: httpx.AsyncClient, run_id: str, **headers: str) -> list[dict[str, Any]]:
    with anyio.fail_after(10):
        while True:
            body = (await client.get(f"/runs/{run_id}", headers=headers)).json()
            if body.get("status") == "waiting" and body.get("interrupts"):
                return list(body["interrupts"])
            await anyio.sleep(0.01)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "memory-store"])
async def test_a_run_waiting_for_an_answer_is_answered_over_http_and_finishes(
        hook_runtime: Any, store_url: str, with_store: bool) -> None:
    asked: list[str] = []
    orch = Orchestrator()
    orch.on_webhook("/deploys", workflow=approval(asked), auth="bearer", secret="t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    async with served(orch, store=store_url if with_store else None) as (host, client):
        run_id = (await client.post("/deploys", json={"ref": "v2"}, headers=auth)).json()["run_id"]
        (question,) = await questions_of(client, run_id, **auth)
        assert question["question"] == "Deploy v2?" and question["schema"] == {"type": "boolean"}
        assert len(question["id"]) == 32 and question["task"] == "Approve"
        listed = await client.get(f"/runs/{run_id}/interrupts", headers=auth)
        assert listed.status_code == 200 and [q["id"] for q in listed.json()["interrupts"]] == [question["id"]]
        # With a store the waiting run gives its slot back; without one it can only wait in memory.
        assert host.in_flight == (0 if with_store else 1)
        where = f"/runs/{run_id}/interrupts/{question['id']}"
        unauthorised = await client.post(where, json={"answer": True})
        assert unauthorised.status_code == 401 and unauthorised.headers["www-authenticate"] == "Bearer"
        mismatch = await client.post(where, json={"answer": "yes please"}, headers=auth)
        assert mismatch.status_code == 422
        assert mismatch.json()["errors"] == ["answer: must be a boolean, got a string"]
        assert "does not match its schema" in mismatch.json()["error"]
        forged = await client.post(f"/runs/{run_id}/interrupts/{'a' * 32}", json={"answer": True}, headers=auth)
        assert forged.status_code == 404 and "has no question" in forged.json()["error"]
        other_run = await client.post(f"/runs/nope/interrupts/{question['id']}", json={"answer": True}, headers=auth)
        assert other_run.status_code == 404
        malformed = await client.post(where, json={"reply": True}, headers=auth)
        assert malformed.status_code == 400 and '"answer"' in malformed.json()["error"]
        not_json = await client.post(where, content=b"true", headers={**auth, "content-type": "text/plain"})
        assert not_json.status_code == 415
        assert await questions_of(client, run_id, **auth)  # refused answers leave it waiting
        ok = await client.post(where, json={"answer": True, "answered_by": "ops"}, headers=auth)
        assert ok.status_code == 200
        body = ok.json()
        assert (body["interrupt_id"], body["status"], body["answer"], body["answered_by"]) == (
            question["id"], "answered", True, "ops")
        assert body["status_url"] == f"/runs/{run_id}"
        replay = await client.post(where, json={"answer": False}, headers=auth)
        assert replay.status_code == 409 and "already answered by ops" in replay.json()["error"]
        done = await until(client, run_id, "completed", headers=auth)
    assert done["tasks_completed"] == 1
    assert asked == ["v2", "v2"]  # asked, then ran again with the answer


async def test_answers_are_guarded_by_the_hmac_signature_of_the_workflows_webhook(hook_runtime: Any) -> None:
    secret = b"shh"
    orch = Orchestrator()
    orch.on_webhook("/deploys", workflow=approval([]), secret=secret)
    async with served(orch) as (_, client):
        body = json.dumps({"ref": "v3"}).encode()
        run_id = (await client.post("/deploys", content=body,
                                    headers={**JSON, "x-signature-256": sign(secret, body)})).json()["run_id"]
        (question,) = await questions_of(client, run_id)
        where = f"/runs/{run_id}/interrupts/{question['id']}"
        answer = json.dumps({"answer": False}).encode()
        assert (await client.post(where, content=answer, headers=JSON)).status_code == 401
        wrong = await client.post(where, content=answer, headers={**JSON, "x-signature-256": sign(b"no", answer)})
        assert wrong.status_code == 401
        ok = await client.post(where, content=answer, headers={**JSON, "x-signature-256": sign(secret, answer)})
        assert ok.status_code == 200
        done = await until(client, run_id, "completed")
    assert done["output"] == "v3: held"


async def test_a_run_of_a_workflow_without_a_webhook_is_not_answered_over_http(hook_runtime: Any) -> None:
    asked: list[str] = []
    orch = Orchestrator()
    orch.on_webhook("/other", workflow=ci())
    wf = approval(asked)
    orch.add_workflow(wf)
    async with served(orch) as (_, client), anyio.create_task_group() as tg:
        tg.start_soon(orch.run_workflow, wf, {"ref": "v4"})
        with anyio.fail_after(10):
            while not (pending := await orch.apending()):
                await anyio.sleep(0.01)
        (question,) = pending
        refused = await client.post(f"/runs/{question.run_id}/interrupts/{question.id}", json={"answer": True})
        assert refused.status_code == 403 and "has a webhook here" in refused.json()["error"]
        await orch.resume(question.run_id, {question.id: True}, answered_by="console")
    assert asked == ["v4", "v4"]


class Console:
    """A plugin's web app (``pyagent_register_web_apps``): a Starlette app with a lifespan."""

    def __init__(self) -> None:
        self.lifespan: list[str] = []
        self.hosts: list[Any] = []

    def factory(self, orchestrator: Any, host: Any) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        self.hosts.append(host)

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
            self.lifespan.append("startup")
            yield {"greeting": "hello"}
            self.lifespan.append("shutdown")

        async def page(request: Any) -> PlainTextResponse:
            return PlainTextResponse(f"{request.state.greeting} at {request.url.path} (root {request.scope['root_path']})")

        return Starlette(routes=[Route("/", page), Route("/{rest:path}", page)], lifespan=lifespan)

    def plugin(self, path: str = "/console") -> Any:
        from pyagent.plugin import hookimpl

        factory = self.factory

        class Plugin:
            @hookimpl
            def pyagent_register_web_apps(self, register: Any) -> None:
                register(path, factory)

        return Plugin()


async def test_web_apps_are_mounted_next_to_the_webhooks(hook_runtime: Any) -> None:
    console = Console()
    hook_runtime.register(console.plugin(), "console")
    orch = Orchestrator()
    orch.on_webhook("/api/trigger", workflow=ci())
    async with served(orch) as (host, client):
        assert console.lifespan == ["startup"] and console.hosts == [host]
        page = await client.get("/console/runs/1")
        assert page.status_code == 200 and page.text == "hello at /console/runs/1 (root /console)"
        bare = await client.get("/console")
        assert bare.status_code == 307 and bare.headers["location"] == "/console/"
        assert (await client.get("/console/")).text == "hello at /console/ (root /console)"
        run = await client.post("/api/trigger", json={"ref": "m"})  # the webhooks are served as before
        assert run.status_code == 202
        assert (await until(client, run.json()["run_id"], "completed"))["output"] == "m>Build"
        assert (await client.get("/consoles")).status_code == 404  # not under the app's path
    assert console.lifespan == ["startup", "shutdown"]


async def test_the_server_opens_for_web_apps_with_no_webhook(hook_runtime: Any) -> None:
    console = Console()
    hook_runtime.register(console.plugin(), "console")
    orch = Orchestrator()
    async with served(orch) as (_, client):
        assert (await client.get("/console/x")).text == "hello at /console/x (root /console)"
        health = (await client.get("/healthz")).json()
        assert health["status"] == "ok" and health["webhooks"] == []
        # A webhook added while serving joins the server the web app opened.
        orch.on_webhook("/late", workflow=ci())
        await anyio.wait_all_tasks_blocked()
        run = await client.post("/late", json={"ref": "z"})
        assert run.status_code == 202
        await until(client, run.json()["run_id"], "completed")
    async with orch.serving(port=None):  # no HTTP port: no web app is built
        pass
    assert len(console.hosts) == 1


async def test_a_web_app_on_the_status_api_is_not_served(hook_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    console = Console()
    hook_runtime.register(console.plugin("/runs"), "console")
    orch = Orchestrator()
    orch.on_webhook("/runs-hook", workflow=ci())
    caplog.set_level(logging.INFO)
    async with served(orch) as (_, client):
        assert (await client.get("/runs/nope")).json() == {"error": "no run 'nope'"}
    assert any("web app /runs" in r.getMessage() and "status API" in r.getMessage() for r in caplog.records)
