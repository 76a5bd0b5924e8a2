"""Remote A2A agents as pyagent agents: ``remote_agent("http://127.0.0.1:9999")``.

The remote Agent Card is read when the agent is built: its name, and a description made of the
card's description and skills, which is what routers score (``handoff.team([...])``). Running the
agent sends the input as an A2A message (text, or a data part for anything else) and follows the
remote task to the end: streamed when the card says the agent streams (each status message is an
``a2a.status`` event, each streamed text chunk an ``agent.delta``), polled otherwise. Cancelling
the run cancels the remote task. The agent has ``remote_url``, so handoffs to it are audited as
remote. Credentials (a bearer token or an API key) are sent for the schemes the card declares.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from pyagent.plugin import (
    ConfigurationError,
    PyAgentError,
    RunContext,
    current_run,
    events,
    get_settings,
)

A2A_STATUS = "a2a.status"
"""Event kind of a remote task's status updates; data: agent, state, message, task_id, url."""

DEFAULT_TIMEOUT = 300.0
"""Seconds a remote task may take, unless ``timeout=`` or the calling task's deadline says otherwise."""

_TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}
_STOPPED = {"TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"}


class RemoteAgentError(PyAgentError):
    """A remote A2A agent could not be reached, refused the call, or its task failed."""


@dataclass
class _Credentials:
    token: str | None = None
    api_key: str | None = None


def _secret(entry: dict[str, Any], key: str, where: str) -> str | None:
    if entry.get(key):
        return str(entry[key])
    var = entry.get(f"{key}_env")
    if not var:
        return None
    value = os.environ.get(str(var))
    if not value:
        raise ConfigurationError(f"{where} takes its {key.replace('_', ' ')} from ${var}, which is not set: export it")
    return value


def _configured(url_or_name: str) -> tuple[str, dict[str, Any], str | None]:
    """The URL, configuration entry and configured name for ``remote_agent(url_or_name)``."""
    remotes: dict[str, Any] = dict(get_settings().a2a.get("remotes", {}))
    if url_or_name in remotes:
        entry = dict(remotes[url_or_name])
        if not entry.get("url"):
            raise ConfigurationError(f"[tool.pyagent.a2a.remotes.{url_or_name}] has no url: add url = \"http://...\"")
        return str(entry["url"]), entry, url_or_name
    if not url_or_name.startswith(("http://", "https://")):
        have = ", ".join(sorted(remotes)) or "none configured"
        raise ConfigurationError(f"remote_agent({url_or_name!r}): give the agent's base URL (http://...) or the name "
                                 f"of a [tool.pyagent.a2a.remotes.NAME] entry (configured: {have})")
    for name, entry in remotes.items():
        if str(entry.get("url", "")).rstrip("/") == url_or_name.rstrip("/"):
            return url_or_name, dict(entry), name
    return url_or_name, {}, None


def fetch_card(url: str, *, timeout: float = 10.0) -> Any:
    """Read an agent's card from ``<url>/.well-known/agent-card.json`` (parsed by the SDK)."""
    import httpx
    from a2a.client.card_resolver import parse_agent_card
    from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH

    where = url.rstrip("/") + AGENT_CARD_WELL_KNOWN_PATH
    try:
        response = httpx.get(where, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RemoteAgentError(f"no A2A agent answers at {url}: {type(exc).__name__}: {exc} (tried {where})") from None
    if response.status_code != 200:
        raise RemoteAgentError(f"{where} answered HTTP {response.status_code}: is {url} an A2A agent's base URL?")
    try:
        return parse_agent_card(response.json())
    except Exception as exc:
        raise RemoteAgentError(f"{where} is not an A2A Agent Card: {type(exc).__name__}: {exc}") from None


def http_client(read_timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The HTTP client remote agents use: Nagle's algorithm off, since a JSON-RPC request's headers
    and body go out as two writes and the second would otherwise wait for a delayed ACK."""
    import socket

    import httpx

    transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(30.0, read=read_timeout))


class RemoteAgent:
    """An agent in another process, reached over A2A; build it with :func:`remote_agent`."""

    def __init__(self, url: str, card: Any, *, name: str | None = None, description: str | None = None,
                 token: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 streaming: bool = True) -> None:
        self.remote_url = url
        self.card = card
        self.name = name or card.name
        # What a router scores: the card's description, and what its skills add to it.
        skills = [f"{s.name}: {s.description}" for s in card.skills
                  if s.description and s.description not in card.description]
        self.description = description if description is not None else " ".join(
            [card.description, *(f"Skill {s}" for s in skills)]).strip()
        self.skills = [s.name for s in card.skills]
        self.credentials = _Credentials(token, api_key)
        self.timeout = timeout
        self.streaming = streaming and card.capabilities.streaming
        self._key = ("a2a", uuid.uuid4().hex)  # this agent's connection in the event loop's scope
        self._check_credentials()

    def _check_credentials(self) -> None:
        card = self.card
        for requirement in card.security_requirements:
            for scheme_name in requirement.schemes:
                scheme = card.security_schemes.get(scheme_name)
                if scheme is None:
                    continue
                if scheme.HasField("api_key_security_scheme") and self.credentials.api_key:
                    return
                if not scheme.HasField("api_key_security_scheme") and self.credentials.token:
                    return
        if card.security_requirements and card.security_schemes:
            kinds = ", ".join(sorted(card.security_schemes))
            raise ConfigurationError(
                f"remote agent {self.name!r} at {self.remote_url} requires credentials ({kinds}): pass "
                "token= (bearer) or api_key=, or set token_env / api_key_env in [tool.pyagent.a2a.remotes.NAME]")

    # -- the connection, kept for the life of the event loop -------------------------------------

    async def _client(self) -> Any:
        from pyagent.plugin import shared_tool_scope

        return await shared_tool_scope().enter(self._key, self._connect)

    def _connect(self) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def connect() -> Any:
            from a2a.client import AuthInterceptor, ClientConfig, ClientFactory

            creds = self.credentials
            async with http_client(self.timeout) as http:
                factory = ClientFactory(ClientConfig(streaming=self.streaming, httpx_client=http))
                client = factory.create(self.card, interceptors=[AuthInterceptor(_Store(creds, self.card))])
                try:
                    yield client
                finally:
                    await client.close()

        return connect()

    # -- running --------------------------------------------------------------------------------

    async def run(self, input: Any, ctx: RunContext) -> Any:
        import anyio
        from a2a.types import Message, Role, SendMessageRequest

        client = await self._client()
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=_parts(input))
        follow = _Follow(self, ctx)
        try:
            with anyio.fail_after(self.timeout):
                async for event in client.send_message(SendMessageRequest(message=message)):
                    answer = follow.event(event)
                    if answer is not _NOTHING:
                        return answer
                if follow.state not in _TERMINAL:
                    await follow.poll(client)
        except TimeoutError:
            await follow.cancel(client)
            raise RemoteAgentError(f"remote agent {self.name!r} at {self.remote_url} did not finish within "
                                   f"{self.timeout:g}s (timeout=); its task was cancelled") from None
        except anyio.get_cancelled_exc_class():
            await follow.cancel(client)
            raise
        except RemoteAgentError:
            raise
        except Exception as exc:
            raise self._failure(exc) from None
        return follow.result()

    def _failure(self, exc: BaseException) -> RemoteAgentError:
        text = str(exc)
        status = getattr(getattr(exc, "__cause__", None), "response", None)
        code = getattr(status, "status_code", None)
        if code in (401, 403) or "HTTP Error 401" in text or "HTTP Error 403" in text:
            return RemoteAgentError(
                f"remote agent {self.name!r} at {self.remote_url} refused the credentials (HTTP {code or 401}): "
                "the token or API key is missing or wrong; pass token= / api_key=, or set token_env / "
                "api_key_env in [tool.pyagent.a2a.remotes.NAME]")
        return RemoteAgentError(f"remote agent {self.name!r} at {self.remote_url} failed: {type(exc).__name__}: {text}")

    def __repr__(self) -> str:
        return f"remote_agent({self.remote_url!r}, name={self.name!r})"


_NOTHING: Any = object()


class _Follow:
    """One remote task followed to its end: its state, its artifacts, and what it said."""

    def __init__(self, agent: RemoteAgent, ctx: RunContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.task_id: str | None = None
        self.state = ""
        self.artifacts: dict[str, Any] = {}  # artifact id -> Artifact, in order
        self.status_text = ""

    def event(self, event: Any) -> Any:
        from a2a.helpers import get_message_text
        from a2a.types import TaskState

        if event.HasField("message"):
            return _message_value(event.message)
        if event.HasField("task"):
            self._task(event.task)
        elif event.HasField("status_update"):
            update = event.status_update
            self.task_id = update.task_id or self.task_id
            self.state = TaskState.Name(update.status.state)
            text = get_message_text(update.status.message) if update.status.HasField("message") else ""
            self.status_text = text or self.status_text
            self.emit(A2A_STATUS, state=self.state.removeprefix("TASK_STATE_").lower(), message=text,
                      task_id=self.task_id, url=self.agent.remote_url)
        elif event.HasField("artifact_update"):
            update = event.artifact_update
            artifact = update.artifact
            previous = self.artifacts.get(artifact.artifact_id)
            if previous is not None and update.append:
                previous.parts.extend(artifact.parts)
            else:
                self.artifacts[artifact.artifact_id] = artifact
            for part in artifact.parts:
                if part.HasField("text") and artifact.name != "output":
                    self.emit(events.AGENT_DELTA, delta=part.text)
        return _NOTHING

    def _task(self, task: Any) -> None:
        from a2a.helpers import get_message_text
        from a2a.types import TaskState

        self.task_id = task.id
        self.state = TaskState.Name(task.status.state)
        if task.status.HasField("message"):
            self.status_text = get_message_text(task.status.message) or self.status_text
        for artifact in task.artifacts:
            self.artifacts[artifact.artifact_id] = artifact

    def emit(self, kind: str, **data: Any) -> None:
        from pyagent.plugin import Event, get_runtime

        run = self.ctx.run or current_run()
        task = self.ctx.task.name if self.ctx.task is not None else None
        if run is not None:
            run.emit(kind, task, agent=self.agent.name, **data)
            return
        runtime = get_runtime()
        runtime.broadcast(Event(kind, workflow=self.agent.name, run_id=self.ctx.run_id or "", task=None,
                                timestamp=runtime.clock.time(), data={"agent": self.agent.name, **data}))

    async def poll(self, client: Any) -> None:
        """Ask for the task until it ends (the stream closed early, or the agent does not stream)."""
        import anyio
        from a2a.types import GetTaskRequest

        if self.task_id is None:
            raise RemoteAgentError(f"remote agent {self.agent.name!r} answered with neither a message nor a task")
        delay = 0.1
        while self.state not in _TERMINAL and self.state not in _STOPPED:
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)
            self._task(await client.get_task(GetTaskRequest(id=self.task_id)))

    async def cancel(self, client: Any) -> None:
        """Pass a cancellation on to the remote task (bounded, even while this run is cancelled)."""
        import anyio
        from a2a.types import CancelTaskRequest

        if self.task_id is None or self.state in _TERMINAL:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                await client.cancel_task(CancelTaskRequest(id=self.task_id))
            except Exception as exc:  # the run is ending anyway: say so, do not mask why it ends
                self.emit(A2A_STATUS, state="cancel_failed", message=f"{type(exc).__name__}: {exc}",
                          task_id=self.task_id, url=self.agent.remote_url)

    def result(self) -> Any:
        if self.state == "TASK_STATE_COMPLETED":
            artifacts = list(self.artifacts.values())
            named = [a for a in artifacts if a.name == "output"] or artifacts
            if not named:
                return self.status_text
            values = [_parts_value(a.parts) for a in named]
            return values[0] if len(values) == 1 else values
        where = f"remote agent {self.agent.name!r} at {self.agent.remote_url}"
        said = f": {self.status_text}" if self.status_text else ""
        if self.state in _STOPPED:
            raise RemoteAgentError(f"{where} stopped its task {self.task_id} waiting for "
                                   f"{'input' if 'INPUT' in self.state else 'authentication'}{said}")
        state = self.state.removeprefix("TASK_STATE_").lower() or "unknown"
        raise RemoteAgentError(f"{where}: task {self.task_id} ended {state}{said}")


def _parts(value: Any) -> list[Any]:
    from a2a.helpers import new_data_part, new_text_part

    if isinstance(value, str):
        return [new_text_part(value, media_type="text/plain")]
    import json

    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    try:
        plain = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        from pyagent.plugin import render_input

        return [new_text_part(render_input(value), media_type="text/plain")]
    return [new_data_part(plain, media_type="application/json")]


def _parts_value(parts: Any) -> Any:
    from a2a.helpers import get_data_parts, get_text_parts

    data = get_data_parts(parts)
    if data and not get_text_parts(parts):
        return _whole_numbers(data[0] if len(data) == 1 else data)
    return "".join(get_text_parts(parts))


def _message_value(message: Any) -> Any:
    return _parts_value(message.parts)


def _whole_numbers(value: Any) -> Any:
    """A2A data parts carry numbers as doubles: give whole ones back as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


class _Store:
    """The SDK's credential service, answering with the configured token or key per card scheme."""

    def __new__(cls, creds: _Credentials, card: Any) -> Any:
        from a2a.client import CredentialService

        class Configured(CredentialService):
            async def get_credentials(self, security_scheme_name: str, context: Any) -> str | None:
                scheme = card.security_schemes.get(security_scheme_name)
                if scheme is not None and scheme.HasField("api_key_security_scheme"):
                    return creds.api_key
                return creds.token

        return Configured()


def remote_agent(url_or_name: str, *, name: str | None = None, description: str | None = None,
                 token: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 streaming: bool = True, card_timeout: float = 10.0) -> RemoteAgent:
    """A remote A2A agent as a pyagent agent: ``remote_agent("http://127.0.0.1:9999")``.

    ``url_or_name`` is the agent's base URL (its card is at ``/.well-known/agent-card.json``) or
    the name of a ``[tool.pyagent.a2a.remotes.NAME]`` entry (``url``, and ``token_env`` or
    ``api_key_env`` naming the environment variable that holds the credential). The card is
    read now (a blocking HTTP GET of at most ``card_timeout`` seconds). ``name`` and
    ``description`` override the card's; ``token`` / ``api_key`` override the configuration;
    ``timeout`` bounds each remote task; ``streaming=False`` polls instead of streaming.
    """
    url, entry, configured_name = _configured(url_or_name)
    where = f"[tool.pyagent.a2a.remotes.{configured_name}]" if configured_name else "remote_agent"
    token = token or _secret(entry, "token", where)
    api_key = api_key or _secret(entry, "api_key", where)
    if timeout <= 0:
        raise ConfigurationError(f"timeout= must be a positive number of seconds, got {timeout!r}")
    card = fetch_card(url, timeout=card_timeout)
    return RemoteAgent(url, card, name=name or entry.get("name"), description=description, token=token,
                       api_key=api_key, timeout=float(entry.get("timeout", timeout)), streaming=streaming)


__all__ = ["A2A_STATUS", "DEFAULT_TIMEOUT", "RemoteAgent", "RemoteAgentError", "fetch_card", "http_client",
           "remote_agent"]
