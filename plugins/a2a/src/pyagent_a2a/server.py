"""Workflows and agents served over A2A: what ``pyagent a2a serve FILE[:NAME]`` runs.

Each workflow (or agent) gets its own Agent Card and JSON-RPC endpoint, under ``/<name>/`` (at
the root when the file publishes one). An A2A task runs it: the task is submitted, then
``working`` with a status message per task event as the run goes (streamed to clients that
stream), the output as the ``output`` artifact (text, or data for anything else), and a final
``completed``, ``failed`` or ``canceled`` status. A cancel request cancels the run. With
credentials configured, every request but the card's must carry them (HTTP 401 otherwise), and
the card declares the scheme, so A2A clients know what to send.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyagent.plugin import LoadedTarget, RunContext, events, render_input

CARD_PATH = "/.well-known/agent-card.json"


@dataclass
class Credentials:
    """What a server requires (or a client sends): a bearer token and/or an API key in a header."""

    token: str | None = None
    api_key: str | None = None
    api_key_header: str = "X-API-Key"

    @property
    def required(self) -> bool:
        return bool(self.token or self.api_key)


def slug(name: str) -> str:
    """A workflow's or agent's name as a URL path segment."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "agent"


def build_card(item: Any, url: str, credentials: Credentials, version: str = "0.1.0") -> Any:
    """The Agent Card of one workflow or agent, served at ``url``."""
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        APIKeySecurityScheme,
        HTTPAuthSecurityScheme,
        SecurityRequirement,
        SecurityScheme,
        StringList,
    )

    is_workflow = hasattr(item, "steps")
    description = item.description or (f"Runs the pyagent workflow {item.name!r}" if is_workflow
                                       else f"The pyagent agent {item.name!r}")
    schemes: dict[str, Any] = {}
    if credentials.token:
        schemes["bearer"] = SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="bearer", description="the token this server was started with"))
    if credentials.api_key:
        schemes["apiKey"] = SecurityScheme(api_key_security_scheme=APIKeySecurityScheme(
            location="header", name=credentials.api_key_header, description="the key this server was started with"))
    skill_description = description
    input_model = getattr(item, "input_model", None)
    if input_model is not None:
        from pydantic import TypeAdapter

        skill_description += f" Input (JSON, as a data part): {json.dumps(TypeAdapter(input_model).json_schema())}"
    return AgentCard(
        name=item.name,
        description=description,
        version=version,
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(id=slug(item.name), name=item.name, description=skill_description,
                           tags=["workflow" if is_workflow else "agent", "pyagent"])],
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=url)],
        security_schemes=schemes,
        security_requirements=[SecurityRequirement(schemes={name: StringList()}) for name in schemes],
    )


def message_input(message: Any, item: Any) -> Any:
    """A task's input from the A2A message: its data part (validated by an input model), or its text."""
    from a2a.helpers import get_data_parts, get_text_parts

    data = get_data_parts(message.parts) if message is not None else []
    value: Any = data[0] if len(data) == 1 else (data or None)
    if value is None:
        text = "\n".join(get_text_parts(message.parts)) if message is not None else ""
        value = text
        model = getattr(item, "input_model", None)
        if model is not None and text.strip().startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                value = json.loads(text)
    model = getattr(item, "input_model", None)
    if model is not None:
        from pydantic import TypeAdapter

        value = TypeAdapter(model).validate_python(value)
    return value


def output_parts(output: Any) -> list[Any]:
    """The output as artifact parts: text as a text part, anything else as a data part."""
    from a2a.helpers import new_data_part, new_text_part

    if isinstance(output, str):
        return [new_text_part(output, media_type="text/plain")]
    try:
        plain = json.loads(json.dumps(output, default=_plain))
    except (TypeError, ValueError):
        return [new_text_part(render_input(output), media_type="text/plain")]
    return [new_data_part(plain, media_type="application/json")]


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(type(value).__name__)


def _status_line(event: Any) -> str | None:
    kind, task = event.kind, event.task
    if kind == events.TASK_STARTED:
        return f"task {task!r} started"
    if kind == events.TASK_COMPLETED:
        return f"task {task!r} completed"
    if kind == events.TASK_FAILED:
        return f"task {task!r} failed: {event.data.get('error', '')}"
    if kind == events.TASK_RETRYING:
        return f"task {task!r} retrying"
    if kind == events.HANDOFF:
        return f"handoff from {event.data.get('from_agent')} to {event.data.get('to_agent')}"
    return None


def make_executor(target: LoadedTarget, item: Any) -> Any:
    """The SDK ``AgentExecutor`` that answers A2A tasks by running ``item`` (a workflow or an agent)."""
    import anyio
    from a2a.helpers import new_task_from_user_message
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.tasks import TaskUpdater
    from a2a.types import Part, TaskState

    is_workflow = hasattr(item, "steps")

    class PyagentExecutor(AgentExecutor):
        async def execute(self, context: Any, event_queue: Any) -> None:
            task_id, context_id = context.task_id or "", context.context_id or ""
            if context.current_task is None and context.message is not None:
                await event_queue.enqueue_event(new_task_from_user_message(context.message))
            updater = TaskUpdater(event_queue=event_queue, task_id=task_id, context_id=context_id)
            try:
                value = message_input(context.message, item)
            except Exception as exc:
                await updater.reject(updater.new_agent_message([Part(text=f"invalid input for {item.name!r}: {exc}")]))
                return
            await updater.start_work(updater.new_agent_message([Part(text=f"{item.name} started")]))
            send, receive = anyio.create_memory_object_stream[tuple[str, str]](1000)

            def on_event(event: Any) -> None:
                if event.kind == events.AGENT_DELTA and event.data.get("delta"):
                    item_ = ("delta", str(event.data["delta"]))
                else:
                    line = _status_line(event)
                    if line is None:
                        return
                    item_ = ("status", line)
                with contextlib.suppress(anyio.WouldBlock):  # never slow the run down
                    send.send_nowait(item_)

            async def publish() -> None:
                async with receive:
                    async for kind, text in receive:
                        if kind == "delta":
                            await updater.add_artifact([Part(text=text)], artifact_id=f"{task_id}-stream",
                                                       name="stream", append=True)
                        else:
                            await updater.update_status(TaskState.TASK_STATE_WORKING,
                                                        updater.new_agent_message([Part(text=text)]))

            output: Any = None
            error: str | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                try:
                    if is_workflow:
                        result = await target.run(item, value, on_event=on_event, run_id=task_id or None)
                        if result.ok:
                            output = result.output
                        else:
                            error = f"workflow {item.name!r} {result.status.value}: {result.error}"
                    else:
                        output = await _run_agent(item, value, task_id, on_event)
                except Exception as exc:
                    error = f"{item.name!r} failed: {type(exc).__name__}: {exc}"
                finally:
                    send.close()
            if error is not None:
                await updater.failed(updater.new_agent_message([Part(text=error)]))
                return
            await updater.add_artifact(output_parts(output), name="output", last_chunk=True)
            await updater.complete()

        async def cancel(self, context: Any, event_queue: Any) -> None:
            updater = TaskUpdater(event_queue=event_queue, task_id=context.task_id or "",
                                  context_id=context.context_id or "")
            await updater.cancel(updater.new_agent_message([Part(text=f"{item.name} was cancelled")]))

    return PyagentExecutor()


async def _run_agent(agent: Any, value: Any, task_id: str, on_event: Callable[[Any], None]) -> Any:
    """Run one agent as the whole of an A2A task (its guardrails apply, as wherever it runs)."""
    return await agent.run(value, RunContext(run_id=task_id))


def build_app(target: LoadedTarget, base_url: str, credentials: Credentials) -> tuple[Any, dict[str, str]]:
    """The Starlette app serving every item of ``target``, and each item's URL by name."""
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore
    from starlette.applications import Starlette
    from starlette.routing import Mount

    items = [*target.workflows.values()] or [*target.agents.values()]
    single = len(items) == 1
    routes: list[Any] = []
    urls: dict[str, str] = {}
    handlers = []
    for item in items:
        prefix = "" if single else f"/{slug(item.name)}"
        url = f"{base_url}{prefix}/"
        card = build_card(item, url, credentials)
        handler = DefaultRequestHandler(agent_executor=make_executor(target, item), task_store=InMemoryTaskStore(),
                                        agent_card=card)
        handlers.append(handler)
        inner = [*create_agent_card_routes(agent_card=card), *create_jsonrpc_routes(request_handler=handler, rpc_url="/")]
        routes.extend(inner if single else [Mount(prefix, routes=inner)])
        urls[item.name] = url

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        try:
            yield
        finally:
            for handler in handlers:
                await handler.aclose()

    app: Any = Starlette(routes=routes, lifespan=lifespan)
    if credentials.required:
        app = CredentialGuard(app, credentials)
    return app, urls


class CredentialGuard:
    """Refuses every request but the Agent Card's without the configured credentials (HTTP 401)."""

    def __init__(self, app: Any, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        import hmac

        creds = self.credentials
        if creds.token and hmac.compare_digest(headers.get(b"authorization", b""), f"Bearer {creds.token}".encode()):
            return True
        given = headers.get(creds.api_key_header.lower().encode(), b"")
        return bool(creds.api_key) and hmac.compare_digest(given, str(creds.api_key).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].endswith(CARD_PATH):
            headers = {k.lower(): v for k, v in scope.get("headers") or []}
            if not self.allowed(headers):
                wanted = " or ".join(w for w in (
                    "Authorization: Bearer <token>" if self.credentials.token else "",
                    f"{self.credentials.api_key_header}: <key>" if self.credentials.api_key else "") if w)
                body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32001, "message": f"unauthorized: this A2A server requires {wanted}"}}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


__all__ = ["Credentials", "build_app", "build_card", "make_executor", "slug"]
