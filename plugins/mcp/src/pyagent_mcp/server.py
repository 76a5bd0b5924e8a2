"""Workflows as MCP tools: what ``pyagent mcp serve FILE[:ORCHESTRATOR]`` runs.

Each workflow is one tool. Its input schema is the JSON schema of the workflow's
``input_model`` (an object schema as it is; any other type as the ``input`` property), or, for a
workflow that declares none, one free ``input`` property holding any JSON value. A call runs the
workflow and returns its output (as text, and as ``structuredContent`` with the run id and
status). While it runs, every task event is a progress notification (tasks done out of the
workflow's tasks, with what happened), the first one carrying the run id; the run can be read
at any time, during and after, as the resource ``pyagent://runs/{run_id}``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from pyagent.plugin import LoadedTarget, render_input

RUNS_KEPT = 200
"""Finished runs a server remembers for ``pyagent://runs/{run_id}``; the oldest are forgotten first."""


def tool_name(workflow_name: str) -> str:
    """A workflow's name as an MCP tool name (letters, digits, '_' and '-')."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", workflow_name.strip()).strip("_")
    return (slug or "workflow")[:64]


def input_schema(workflow: Any) -> tuple[dict[str, Any], bool]:
    """The tool's input schema, and whether the arguments object is the input itself."""
    model = getattr(workflow, "input_model", None)
    if model is None:
        return {"type": "object", "properties": {"input": {
            "description": f"The input of workflow {workflow.name!r}: any JSON value (text, a number, an object...)"}},
            "additionalProperties": False}, False
    from pydantic import TypeAdapter

    schema = TypeAdapter(model).json_schema()
    if schema.get("type") == "object":
        return schema, True
    return {"type": "object", "properties": {"input": schema}, "required": ["input"],
            "additionalProperties": False}, False


class RunBook:
    """The runs this server started, by run id, with what they have done so far."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def start(self, run_id: str, workflow: Any) -> dict[str, Any]:
        entry = {"run_id": run_id, "workflow": workflow.name, "status": "running", "started_at": time.time(),
                 "tasks_total": workflow.task_count, "tasks_done": [], "output": None, "error": None}
        self.runs[run_id] = entry
        finished = [k for k, v in self.runs.items() if v["status"] != "running"]
        for old in finished[: max(0, len(finished) - RUNS_KEPT)]:
            del self.runs[old]
        return entry

    def get(self, run_id: str) -> dict[str, Any] | None:
        return self.runs.get(run_id)


def build_server(target: LoadedTarget, *, name: str = "pyagent") -> Any:
    """The low-level MCP server exposing ``target``'s workflows as tools and their runs as resources."""
    import anyio
    import mcp_types as types
    from mcp.server import Server
    from pydantic import TypeAdapter, ValidationError

    workflows = {tool_name(wf.name): wf for wf in target.workflows.values()}
    schemas = {key: input_schema(wf) for key, wf in workflows.items()}
    book = RunBook()

    def describe(wf: Any) -> str:
        text = wf.description or f"Runs the pyagent workflow {wf.name!r}"
        return (f"{text} ({wf.pattern_name}, {wf.task_count} tasks). Progress notifications follow its "
                "tasks; the first names the run id, and pyagent://runs/{run_id} reads the run.")

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=key, title=wf.name, description=describe(wf), input_schema=schemas[key][0])
            for key, wf in workflows.items()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        key = params.name
        wf = workflows.get(key)
        if wf is None:
            return _error(f"no workflow tool named {key!r} (tools: {', '.join(workflows) or 'none'})")
        arguments = dict(params.arguments or {})
        whole = schemas[key][1]
        value: Any = arguments if whole else arguments.get("input")
        if wf.input_model is not None:
            try:
                value = TypeAdapter(wf.input_model).validate_python(value)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
                return _error(f"invalid input for workflow {wf.name!r}: {problems}")
        from pyagent.plugin import events

        run_id = _new_run_id()
        entry = book.start(run_id, wf)
        send, receive = anyio.create_memory_object_stream[tuple[float, str]](1000)
        total = float(max(wf.task_count, 1))

        def on_event(event: Any) -> None:
            line = _event_line(event)
            if event.kind in (events.TASK_COMPLETED, events.TASK_FAILED, events.TASK_SKIPPED):
                entry["tasks_done"].append({"task": event.task, "status": event.status or event.kind})
            if line is not None:
                # A client that does not read progress never slows the run: past the buffer, drop.
                with contextlib.suppress(anyio.WouldBlock):
                    send.send_nowait((float(len(entry["tasks_done"])), line))

        async def progress() -> None:
            async with receive:
                async for done, line in receive:
                    await ctx.session.report_progress(done, total, line)

        result = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress)
            send.send_nowait((0.0, f"run {run_id} of workflow {wf.name!r} started "
                                   f"(read it at pyagent://runs/{run_id})"))
            try:
                result = await target.run(wf, value, on_event=on_event, run_id=run_id)
            except Exception as exc:  # refused before any agent ran: a missing plugin, a bad setting
                entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                send.close()
        if result is None:
            return _error(f"workflow {wf.name!r} could not start: {entry['error']}", run_id)
        entry.update(status=result.status.value, output=_jsonable(result.output), error=result.error,
                     finished_at=time.time())
        if not result.ok:
            return _error(f"workflow {wf.name!r} {result.status.value}: {result.error}", run_id)
        text = result.output if isinstance(result.output, str) else render_input(result.output)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content={"run_id": run_id, "status": result.status.value,
                                "output": _jsonable(result.output)})

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=f"pyagent://runs/{rid}", name=f"run {rid}", mime_type="application/json",
                           description=f"run of workflow {r['workflow']!r}: {r['status']}")
            for rid, r in book.runs.items()])

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template="pyagent://runs/{run_id}", name="run", mime_type="application/json",
            description="A workflow run started by a tool call: status, tasks done, output or error")])

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        from mcp import MCPError

        uri = str(params.uri)
        run_id = uri.removeprefix("pyagent://runs/")
        entry = book.get(run_id) if uri.startswith("pyagent://runs/") else None
        if entry is None:
            raise MCPError(-32002, f"no run {run_id!r} here: runs are read as pyagent://runs/<run id>, "
                                   "with the id the tool call reported")
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=uri, mime_type="application/json", text=json.dumps(entry, default=repr))])

    return Server(name, instructions="pyagent workflows, one tool each.", on_list_tools=list_tools,
                  on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


def _event_line(event: Any) -> str | None:
    kind, task = event.kind, event.task
    if kind == "task.started":
        return f"task {task!r} started"
    if kind == "task.completed":
        return f"task {task!r} completed"
    if kind == "task.failed":
        return f"task {task!r} failed: {event.data.get('error', '')}".rstrip(": ")
    if kind == "task.retrying":
        return f"task {task!r} retrying"
    if kind == "task.skipped":
        return f"task {task!r} skipped"
    return None


def _error(text: str, run_id: str | None = None) -> Any:
    import mcp_types as types

    structured = {"run_id": run_id, "status": "failed", "error": text} if run_id else None
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True,
                                structured_content=structured)


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=_plain))
    except (TypeError, ValueError):
        return repr(value)


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return repr(value)


def _new_run_id() -> str:
    import uuid

    return uuid.uuid4().hex


async def serve_stdio(server: Any) -> None:
    """Serve one client over this process's stdin and stdout until it disconnects."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Any, *, host: str, port: int, path: str = "/mcp", token: str | None = None,
                     ready: Callable[[str], Any] | None = None) -> None:
    """Serve streamable HTTP on ``host:port`` (0: a free port); ``ready(url)`` once it listens."""
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    if token:
        app = BearerGuard(app, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)

    async def announce() -> None:
        import anyio

        while not web.started:
            await anyio.sleep(0.01)
        bound = web.servers[0].sockets[0].getsockname()[1]
        if ready is not None:
            ready(f"http://{host}:{bound}{path}")

    import anyio

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await web.serve()
        tg.cancel_scope.cancel()


class BearerGuard:
    """Refuses HTTP requests without ``Authorization: Bearer <token>`` (401, with a JSON body)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import hmac

        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>, the token "
                                            "this server was started with"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
