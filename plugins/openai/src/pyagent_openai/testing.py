"""A loopback chat-completions server for tests: the real protocol, answers scripted per test.

``ChatServer`` speaks the part of the OpenAI HTTP API that agents use (``POST
/v1/chat/completions``, plain and SSE-streamed, with tools, JSON-schema response formats and
usage; ``GET /v1/models``) on 127.0.0.1, on a free port, in a thread of its own, so the real
``openai`` SDK (or any client) talks to it from asyncio, trio or synchronous code alike::

    from pyagent_openai.testing import ChatServer, reply, fail

    with ChatServer([reply("Hello"), fail(429, retry_after=1), reply(tool_calls=[("lookup", {"q": "x"})])]) as server:
        os.environ["PYAGENT_MODEL"] = "test:test-model"   # with [tool.pyagent.models.test] base_url = server.url
        ...
        server.requests          # every request body received, in order

A script item is the answer to one request: text, :func:`reply` (text, tool calls, usage, a
delay), :func:`fail` (an HTTP error with OpenAI's error body), :func:`cut` (a stream that
breaks), or a function of the request body returning one of those. ``handler=`` answers every request instead of a script.

Tokens are counted as whitespace-separated words unless a reply says otherwise, so usage
figures are deterministic. Other plugins' tests can use this server too: depend on
``pyagent-openai[testing]`` (starlette and uvicorn, imported only when a server starts).
``python -m pyagent_openai.testing --delay 0.05`` serves from a separate process and prints
its URL (the benchmarks use that).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODELS = ("test-model",)


@dataclass
class ScriptedReply:
    """One scripted answer: text and/or tool calls, usage, a delay, or an HTTP error."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    delay: float = 0.0
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = None
    cut_after: int | None = None  # streamed: stop after this many pieces of text
    cut_drop: bool = True  # drop the connection (else end the stream early, without finishing it)


def reply(text: str | dict[str, Any] | None = None, *, tool_calls: Iterable[tuple[str, dict[str, Any]]] = (),
          usage: tuple[int, int] | None = None, delay: float = 0.0, finish_reason: str | None = None) -> ScriptedReply:
    """A successful answer. A dict is sent as its JSON text (a structured answer)."""
    body = json.dumps(text) if isinstance(text, dict) else text
    return ScriptedReply(text=body, tool_calls=list(tool_calls), usage=usage, delay=delay,
                         finish_reason=finish_reason)


def fail(status: int, message: str | None = None, *, code: str | None = None, type: str | None = None,
         retry_after: float | None = None, delay: float = 0.0) -> ScriptedReply:
    """An HTTP error as OpenAI sends it (``{"error": {"message", "type", "code"}}``)."""
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    kind = type or ("rate_limit_error" if status == 429 else "server_error" if status >= 500
                    else "invalid_request_error")
    return ScriptedReply(status=status, headers=headers, delay=delay, error={
        "message": message or _DEFAULT_MESSAGES.get(status, f"error {status}"), "type": kind, "code": code,
        "param": None})


_DEFAULT_MESSAGES = {
    400: "Bad request.",
    401: "Incorrect API key provided.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
    503: "The engine is currently overloaded.",
}


def cut(text: str, after: int, *, drop: bool = True) -> ScriptedReply:
    """A streamed answer that breaks after ``after`` pieces of ``text``: the connection drops
    (``drop=True``), or the stream ends early with neither a finish reason nor ``[DONE]``."""
    return ScriptedReply(text=text, cut_after=after, cut_drop=drop)


def slow(seconds: float, text: str = "late answer") -> ScriptedReply:
    """An answer that takes ``seconds`` to come (for timeouts)."""
    return ScriptedReply(text=text, delay=seconds)


def words(value: Any) -> int:
    """The loopback server's token count: whitespace-separated words."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(words(part.get("text") if isinstance(part, dict) else part) for part in value)
    return len(str(value).split())


class ChatServer:
    """An OpenAI-compatible server on 127.0.0.1 (a free port), scripted per test.

    ``script``: answers in order (a test fails loudly when the server runs out); ``handler``:
    a function of the request body answering every request; ``models``: the model ids it
    serves (others get OpenAI's 404); ``api_key``: when set, other keys get a 401;
    ``delay``: seconds every answer waits before it is sent.
    """

    def __init__(self, script: Iterable[Any] | None = None, *, handler: Callable[[dict[str, Any]], Any] | None = None,
                 models: Iterable[str] = DEFAULT_MODELS, api_key: str | None = None, delay: float = 0.0) -> None:
        self._script = list(script or [])
        self.handler = handler
        self.models = list(models)
        self.api_key = api_key
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *items: Any) -> None:
        """Add answers to the end of the script."""
        with self._lock:
            self._script.extend(items)

    def __enter__(self) -> ChatServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="chat-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the loopback chat server did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"the loopback chat server failed to start: {self._error}") from None

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._loop is None:
            return
        self._server.should_exit = True
        loop, closing = self._loop, self._closing
        if closing is not None:
            loop.call_soon_threadsafe(closing.set)  # wakes answers still waiting out their delay
        if self._thread is not None:
            self._thread.join(timeout)

    def _serve(self, sock: socket.socket) -> None:
        try:
            try:
                import starlette  # noqa: F401
                import uvicorn
            except ImportError as exc:
                raise ImportError(
                    f"ChatServer needs starlette and uvicorn ({exc}): pip install 'pyagent-openai[testing]' "
                    "(from a clone of pyagent: pip install './plugins/openai[testing]')"
                ) from None
            config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", access_log=False,
                                    timeout_graceful_shutdown=2)
            self._server = uvicorn.Server(config)
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._closing = asyncio.Event()
                serving = asyncio.ensure_future(self._server.serve(sockets=[sock]))
                while not self._server.started and not serving.done():
                    await asyncio.sleep(0.005)
                self._started.set()
                await serving

            loop.run_until_complete(main())
            loop.close()
        except BaseException as exc:  # reported to the thread that started the server
            self._error = exc
        finally:
            self._started.set()
            sock.close()

    # -- the protocol ------------------------------------------------------------------------

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "pyagent-test"} for m in self.models]})

        async def completions(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
                self.headers.append(dict(request.headers))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await self._answer(body, request, JSONResponse, StreamingResponse)
            finally:
                with self._lock:
                    self.in_flight -= 1

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                                 Route("/v1/models", models, methods=["GET"])])

    async def _answer(self, body: dict[str, Any], request: Any, json_response: Any, streaming: Any) -> Any:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error_response(fail(401, code="invalid_api_key"), json_response)
        model = body.get("model")
        if model not in self.models:
            return self._error_response(fail(404, f"The model `{model}` does not exist or you do not have "
                                                  "access to it.", code="model_not_found"), json_response)
        item = self._next(body)
        delay = self.delay + item.delay
        if delay > 0:
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        if item.status != 200:
            return self._error_response(item, json_response)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return streaming(self._chunks(body, item, include_usage), media_type="text/event-stream")
        return json_response(self._completion(body, item))

    def _next(self, body: dict[str, Any]) -> ScriptedReply:
        if self.handler is not None:
            return _as_reply(self.handler(body))
        with self._lock:
            if not self._script:
                return fail(500, "the test's script ran out: the loopback server got more requests than scripted")
            item = self._script.pop(0)
        if callable(item) and not isinstance(item, ScriptedReply):
            item = item(body)
        return _as_reply(item)

    @staticmethod
    def _error_response(item: ScriptedReply, json_response: Any) -> Any:
        return json_response({"error": item.error}, status_code=item.status, headers=item.headers)

    def _usage(self, body: dict[str, Any], item: ScriptedReply) -> dict[str, int]:
        if item.usage is not None:
            prompt, completion = item.usage
        else:
            prompt = sum(words(m.get("content")) for m in body.get("messages", []))
            completion = words(item.text) + sum(words(json.dumps(a)) for _, a in item.tool_calls)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _calls(self, item: ScriptedReply) -> list[dict[str, Any]]:
        return [{"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}} for name, args in item.tool_calls]

    def _completion(self, body: dict[str, Any], item: ScriptedReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": item.text}
        calls = self._calls(item)
        if calls:
            message["tool_calls"] = calls
        finish = item.finish_reason or ("tool_calls" if calls else "stop")
        return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                                         "logprobs": None}],
                "usage": self._usage(body, item)}

    async def _chunks(self, body: dict[str, Any], item: ScriptedReply, include_usage: bool) -> Any:
        ident, created, model = f"chatcmpl-{next(self._ids)}", int(time.time()), body.get("model")

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        text = item.text or ""
        pieces = [p for p in _split(text)]
        for n, piece in enumerate(pieces):
            if item.cut_after is not None and n >= item.cut_after:
                await asyncio.sleep(0.01)  # let what was sent reach the client first
                if item.cut_drop:
                    raise ConnectionAbortedError("the test script drops the connection mid-stream")
                return
            yield chunk({"content": piece})
            await asyncio.sleep(0)
        calls = self._calls(item)
        for index, call in enumerate(calls):
            yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"], "arguments": ""}}]})
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        yield chunk({}, item.finish_reason or ("tool_calls" if calls else "stop"))
        if include_usage:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": self._usage(body, item)}
            yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"


def _split(text: str) -> list[str]:
    """Text in streamed pieces: each word with the space after it."""
    import re

    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _as_reply(item: Any) -> ScriptedReply:
    if isinstance(item, ScriptedReply):
        return item
    if isinstance(item, dict):
        return reply(item)
    return reply(str(item))


def main(argv: list[str] | None = None) -> None:
    """Serve from this process until interrupted: ``python -m pyagent_openai.testing --delay 0.05``."""
    import argparse

    parser = argparse.ArgumentParser(description="a loopback OpenAI-compatible chat server for tests")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--reply", default="ok", help="the text of every answer")
    parser.add_argument("--model", action="append", default=None, help="a model id to serve (repeatable)")
    args = parser.parse_args(argv)
    answer = reply(args.reply)
    server = ChatServer(handler=lambda body: answer, models=args.model or DEFAULT_MODELS, delay=args.delay)
    server.start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
