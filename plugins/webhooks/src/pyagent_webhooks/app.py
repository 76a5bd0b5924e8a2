"""The ASGI app serving an orchestrator's webhooks and the run status API.

Routes: ``POST <webhook path>`` (202 ``{"run_id", "status_url"}``), ``GET /runs/{run_id}``,
``GET /runs/{run_id}/interrupts`` (the questions a run waits on), ``POST
/runs/{run_id}/interrupts/{interrupt_id}`` (answer one: ``{"answer": ..., "answered_by": ...}``),
``GET /healthz``. Errors are JSON ``{"error": ...}``: 400 bad JSON (with the parse error), 401
bad or missing signature or token, 403 answering a run whose workflow has no webhook here, 404
unknown path, run or question, 405 wrong method, 409 question already answered, 413 body over
``max_body``, 415 not JSON, 422 an answer that does not match the question's schema (with
``errors``), 429 too many runs waiting (with Retry-After), 503 shutting down or not serving.
With a store the run is recorded before 202 is sent, and an answer before 200 is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyagent.plugin import (
    AnswerValidationError,
    InterruptAnsweredError,
    InterruptNotFoundError,
    NotAcceptingError,
)

from .trigger import SIGNATURE_HEADER, Webhook

log = logging.getLogger("pyagent.webhooks")

#: Seconds a client is asked to wait (Retry-After) on 429 and 503.
RETRY_AFTER = 5


_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    data = _encode(body).encode()
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class WebhookEndpoints:
    """Request handlers bound to one orchestrator; webhooks are looked up live by path."""

    def __init__(self, orchestrator: Any) -> None:
        self.orchestrator = orchestrator

    def _hooks(self) -> dict[str, Webhook]:
        return {t.path: t for t in self.orchestrator.triggers if isinstance(t, Webhook)}

    async def dispatch(self, request: Request) -> Response:
        path = "/" + str(request.path_params.get("path", "")).rstrip("/")
        hook = self._hooks().get(path)
        if hook is None:
            return _error(404, f"no webhook at {path}")
        if request.method != "POST":
            return _error(405, f"{path} accepts POST only", {"Allow": "POST"})
        return await self.receive(request, hook)

    async def receive(self, request: Request, hook: Webhook) -> Response:
        host = self.orchestrator.host
        if host is None or not host.accepting:
            return _error(503, "shutting down: not accepting new runs", {"Retry-After": str(RETRY_AFTER)})
        headers = request.headers
        if hook.auth == "bearer" and not hook.token_ok(headers.get("authorization")):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                          {"WWW-Authenticate": "Bearer"})
        if not _is_json(headers.get("content-type", "")):
            return _error(415, f"send a JSON body with Content-Type: application/json "
                               f"(got {headers.get('content-type') or 'no content type'!r})")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > hook.max_body:
            return _error(413, f"body of {declared} bytes is over the limit of {hook.max_body}")
        if declared is not None and declared.isdigit():
            body = await request.body()  # its size is known and within the limit
        else:  # no (usable) Content-Length: count while reading
            chunks = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > hook.max_body:
                    return _error(413, f"body is over the limit of {hook.max_body} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
        if hook.auth == "hmac" and not hook.signature_ok(body, headers.get(SIGNATURE_HEADER)):
            return _error(401, "missing or wrong signature (X-Signature-256: sha256=<hex HMAC-SHA256 of the body>)")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        key = headers.get("idempotency-key")
        run_id = hook.run_id_for(key) if key else None
        if host.waiting >= hook.max_pending:
            if run_id is not None and await host.recorded(run_id):  # a replay starts nothing: no need to refuse it
                return self._accepted(request, run_id, replayed=True)
            return _error(429, f"{host.waiting} runs are waiting to start (max_pending={hook.max_pending}): retry later",
                          {"Retry-After": str(RETRY_AFTER)})
        try:
            sub = await host.submit(hook.workflow, payload, run_id=run_id, trigger="webhook", source=hook.path)
        except NotAcceptingError:
            return _error(503, "shutting down: not accepting new runs", {"Retry-After": str(RETRY_AFTER)})
        return self._accepted(request, sub.run_id, replayed=not sub.created)

    def _accepted(self, request: Request, run_id: str, *, replayed: bool) -> Response:
        url = f"{request.scope.get('root_path', '')}/runs/{run_id}"
        headers = {"Location": url}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return _json(202, {"run_id": run_id, "status_url": url}, headers)

    async def status(self, request: Request) -> Response:
        run_id = str(request.path_params["run_id"])
        host = self.orchestrator.host
        if host is None:
            return _error(503, "not serving", {"Retry-After": str(RETRY_AFTER)})
        found = await host.run_status(run_id)
        if found is None:
            return _error(404, f"no run {run_id!r}")
        guards = [h for h in self._hooks().values() if h.auth == "bearer" and h.workflow.name == found["workflow"]]
        if guards and not any(h.token_ok(request.headers.get("authorization")) for h in guards):
            return _error(401, "this run's webhook needs a bearer token to read its status", {"WWW-Authenticate": "Bearer"})
        return _json(200, found)

    # -- questions for people ------------------------------------------------------------------

    def _guards(self, workflow: str) -> list[Webhook]:
        return [h for h in self._hooks().values() if h.workflow.name == workflow]

    async def questions(self, request: Request) -> Response:
        """``GET /runs/{run_id}/interrupts``: the questions the run waits on (auth as for its status)."""
        run_id = str(request.path_params["run_id"])
        host = self.orchestrator.host
        if host is None:
            return _error(503, "not serving", {"Retry-After": str(RETRY_AFTER)})
        found = await host.run_status(run_id)
        if found is None:
            return _error(404, f"no run {run_id!r}")
        guards = [h for h in self._guards(found["workflow"]) if h.auth == "bearer"]
        if guards and not any(h.token_ok(request.headers.get("authorization")) for h in guards):
            return _error(401, "this run's webhook needs a bearer token to read its questions",
                          {"WWW-Authenticate": "Bearer"})
        asked = await host.questions(run_id)
        return _json(200, {"run_id": run_id, "status": found["status"], "interrupts": [q.to_dict() for q in asked]})

    async def answer(self, request: Request) -> Response:
        """``POST /runs/{run_id}/interrupts/{interrupt_id}`` with ``{"answer": ..., "answered_by": "..."}``.

        Guarded like the run's workflow's webhook (its bearer token or HMAC signature); the
        answer is recorded in the store before 200 is sent, and the run goes on at once.
        """
        run_id = str(request.path_params["run_id"])
        interrupt_id = str(request.path_params["interrupt_id"])
        host = self.orchestrator.host
        if host is None:
            return _error(503, "not serving", {"Retry-After": str(RETRY_AFTER)})
        question = await host.question(run_id, interrupt_id)
        if question is None:
            return _error(404, f"run {run_id!r} has no question {interrupt_id!r}")
        hooks = self._guards(question.workflow)
        if not hooks:
            return _error(403, f"runs of workflow {question.workflow!r} are answered over HTTP only when it has a "
                               "webhook here, whose auth guards the answers: add orchestrator.on_webhook(path, "
                               "workflow, auth=..., secret=...), or answer with pyagent approve or orchestrator.resume")
        headers = request.headers
        limit = max(h.max_body for h in hooks)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(413, f"body of {declared} bytes is over the limit of {limit}")
        body = await request.body()
        if len(body) > limit:
            return _error(413, f"body is over the limit of {limit} bytes")
        guarded = [h for h in hooks if h.auth is not None]
        if guarded and not any(self._authorised(h, body, headers) for h in guarded):
            kinds = sorted({h.auth for h in guarded if h.auth})
            extra = {"WWW-Authenticate": "Bearer"} if "bearer" in kinds else None
            return _error(401, "answers to this run's questions need its webhook's "
                               + " or ".join("bearer token (Authorization: Bearer <token>)" if k == "bearer"
                                             else "signature (X-Signature-256: sha256=<hex HMAC-SHA256 of the body>)"
                                             for k in kinds), extra)
        if not _is_json(headers.get("content-type", "")):
            return _error(415, f"send a JSON body with Content-Type: application/json "
                               f"(got {headers.get('content-type') or 'no content type'!r})")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        if not isinstance(payload, dict) or "answer" not in payload:
            return _error(400, 'send {"answer": <the answer>, "answered_by": "<who>"} (answered_by is optional)')
        who = payload.get("answered_by")
        if who is not None and not isinstance(who, str):
            return _error(400, "answered_by must be a string")
        try:
            answered = await host.answer(run_id, interrupt_id, payload["answer"], answered_by=who)
        except InterruptNotFoundError as exc:
            return _error(404, str(exc))
        except InterruptAnsweredError as exc:
            return _error(409, str(exc))
        except AnswerValidationError as exc:
            return _json(422, {"error": str(exc), "errors": exc.errors})
        url = f"{request.scope.get('root_path', '')}/runs/{run_id}"
        return _json(200, {"run_id": run_id, "interrupt_id": answered.id, "status": answered.status,
                           "answer": answered.answer, "answered_by": answered.answered_by,
                           "answered_at": answered.answered_at, "status_url": url})

    @staticmethod
    def _authorised(hook: Webhook, body: bytes, headers: Any) -> bool:
        if hook.auth == "bearer":
            return hook.token_ok(headers.get("authorization"))
        return hook.signature_ok(body, headers.get(SIGNATURE_HEADER))

    async def health(self, request: Request) -> Response:
        host = self.orchestrator.host
        if host is None or not host.accepting:
            return _json(503, {"status": "stopping" if host is not None else "not serving"},
                         {"Retry-After": str(RETRY_AFTER)})
        return _json(200, {"status": "ok", "running": host.in_flight, "waiting": host.waiting,
                           "webhooks": sorted(self._hooks())})


def serving_lifespan(orchestrator: Any, **options: Any) -> Callable[[Any], Any]:
    """A Starlette/FastAPI ``lifespan=`` that serves ``orchestrator`` while the app runs.

    For an app that mounts :func:`webhook_app` (mounted apps get no lifespan of their own):
    ``FastAPI(lifespan=serving_lifespan(orchestrator, store="sqlite://runs.db"))``. The
    orchestrator's own HTTP listener stays off: your server serves the app.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with orchestrator.serving(port=None, **options):
            yield

    return lifespan


def webhook_app(orchestrator: Any, *, lifespan: bool = True) -> Starlette:
    """The ASGI app for ``orchestrator``'s webhooks, to run or mount anywhere.

    Run on its own by any ASGI server (``uvicorn module:app``), its lifespan serves the
    orchestrator (schedules and events too). Mounted inside another app, give that app
    ``lifespan=serving_lifespan(orchestrator)``: runs start only while the orchestrator serves.
    """
    endpoints = WebhookEndpoints(orchestrator)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [
        Route("/healthz", endpoints.health, methods=["GET"]),
        Route("/runs/{run_id:path}/interrupts/{interrupt_id}", endpoints.answer, methods=["POST"]),
        Route("/runs/{run_id:path}/interrupts", endpoints.questions, methods=["GET"]),
        Route("/runs/{run_id:path}", endpoints.status, methods=["GET"]),
        Route("/{path:path}", endpoints.dispatch, methods=methods),
    ]
    return Starlette(routes=routes, lifespan=serving_lifespan(orchestrator) if lifespan else None)
