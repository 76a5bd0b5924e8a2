"""A model on an OpenAI-compatible endpoint, called through the ``openai`` SDK.

One :class:`OpenAIModel` serves every agent that names the same model string (the kernel
shares it), so its ``max_concurrency`` bounds the requests in flight to that model across a
whole fan-out. The SDK's own retries are off: a 429 or a 5xx is raised as a retryable
:class:`~pyagent.plugin.ModelError` carrying Retry-After, and the task's retry policy decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pyagent.plugin import ModelError, ModelRequest, ModelResponse, ToolCall, Usage

from .endpoint import Endpoint
from .errors import translate
from .limit import SharedLimit

_KEPT_LOOPS = 4  # clients kept for this many event loops (an httpx client belongs to one loop)


class _LoopState:
    __slots__ = ("client", "loop")

    def __init__(self, loop: Any, client: Any) -> None:
        self.loop = loop
        self.client = client


def _current_loop() -> Any:
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    import asyncio

    return asyncio.get_running_loop()


class OpenAIModel:
    """``OpenAIModel("gpt-4o-mini")``, or with ``base_url=``, ``api_key=``, ``max_concurrency=``.

    Usually built by the kernel from ``model="openai:gpt-4o-mini"`` or a named endpoint
    (``model="local:qwen2.5-7b"``); build one yourself to pass it as ``agent(model=...)``.
    """

    def __init__(self, model_id: str, endpoint: Endpoint | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, max_concurrency: int | None = None,
                 structured_output: str | None = None) -> None:
        options = {k: v for k, v in {"base_url": base_url, "api_key": api_key, "max_concurrency": max_concurrency,
                                      "structured_output": structured_output}.items() if v is not None}
        if endpoint is None:
            endpoint = Endpoint.from_config("openai", options)
        elif options:
            endpoint = endpoint.model_copy(update=options)
        self.model_id = model_id
        self.endpoint = endpoint
        self.name = f"{endpoint.name}:{model_id}"
        self.url = endpoint.url
        self._key = endpoint.key(self.name)  # no key for OpenAI itself: refused now, before any agent runs
        self.structured_output = endpoint.structured_output
        self._states: list[_LoopState] = []
        # One bound for the whole process, whatever event loop a request comes from.
        limit = endpoint.max_concurrency
        self._limit = SharedLimit(limit) if limit else None

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r}, url={self.url!r})"

    # -- per event loop: the SDK client ----------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = _current_loop()
        for state in self._states:
            if state.loop is loop:
                return state
        import openai

        # Our own HTTP client: the SDK's default one closes itself from __del__ on whatever asyncio
        # loop is running then, which breaks a client made under trio (or another loop).
        client = openai.AsyncOpenAI(api_key=self._key, base_url=self.url, max_retries=0,
                                    default_headers=self.endpoint.headers or None,
                                    http_client=openai.DefaultAsyncHttpxClient(),
                                    **({"timeout": self.endpoint.timeout} if self.endpoint.timeout else {}))
        state = _LoopState(loop, client)
        self._states = [state, *self._states][:_KEPT_LOOPS]
        return state

    async def aclose(self) -> None:
        """Close the HTTP connections this model holds on the running event loop."""
        loop = _current_loop()
        for state in [s for s in self._states if s.loop is loop]:
            self._states.remove(state)
            await state.client.close()

    # -- the call --------------------------------------------------------------------------------

    async def respond(self, request: ModelRequest) -> ModelResponse:
        """Send one chat-completions request; stream it when the agent streams."""
        state = self._state()
        if self._limit is None:
            return await self._call(state.client, request)
        async with self._limit:
            return await self._call(state.client, request)

    async def _call(self, client: Any, request: ModelRequest) -> ModelResponse:
        import openai

        mode = self.structured_output
        try:
            try:
                return await self._send(client, request, mode)
            except openai.BadRequestError as exc:
                if request.output is None or mode != "json_schema" or not _about_response_format(exc):
                    raise
                # The server has no JSON-schema decoding: describe the schema in the prompt from now on.
                self.structured_output = "prompt"
                return await self._send(client, request, "prompt")
        except openai.OpenAIError as exc:
            raise translate(exc, self.name, self.endpoint, timeout=request.timeout) from None

    def _cut(self, parts: list[str], what: str) -> ModelError:
        return _cut_error(self.name, self.url, parts, what)

    async def _send(self, client: Any, request: ModelRequest, mode: str) -> ModelResponse:
        kwargs = self._kwargs(request, mode)
        if request.on_delta is not None:
            return await self._stream(client, kwargs, request.on_delta)
        completion = await client.chat.completions.create(**kwargs)
        return self._response(completion)

    def _kwargs(self, request: ModelRequest, mode: str) -> dict[str, Any]:
        messages = request.messages
        kwargs: dict[str, Any] = {"model": self.model_id}
        if request.tools:
            kwargs["tools"] = [t.to_openai() for t in request.tools]
        spec = request.output
        if spec is not None:
            if mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": spec.name, "schema": spec.schema, "strict": spec.strict}}
            else:
                if mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
                note = ("Answer with only a JSON value that matches this JSON schema, and nothing else:\n"
                        + json.dumps(spec.schema))
                messages = [*messages, {"role": "system", "content": note}]
        kwargs["messages"] = messages
        if request.timeout is not None:
            kwargs["timeout"] = max(request.timeout, 0.001)
        if self.endpoint.extra_body:
            kwargs["extra_body"] = self.endpoint.extra_body
        return kwargs

    def _response(self, completion: Any) -> ModelResponse:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else None
        calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                 for c in (getattr(message, "tool_calls", None) or []) if getattr(c, "function", None)]
        return ModelResponse(text=getattr(message, "content", None), tool_calls=calls,
                             usage=_usage(completion.usage), model=self.name,
                             finish_reason=getattr(choice, "finish_reason", None))

    async def _stream(self, client: Any, kwargs: dict[str, Any], on_delta: Callable[[str], None]) -> ModelResponse:
        import openai

        stream = await client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        finish: str | None = None
        try:
            try:
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = _usage(chunk.usage)
                    for choice in chunk.choices or []:
                        delta = choice.delta
                        if delta is not None and delta.content:
                            parts.append(delta.content)
                            on_delta(delta.content)
                        for call in (getattr(delta, "tool_calls", None) or []) if delta is not None else []:
                            slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                            slot["id"] = call.id or slot["id"]
                            if call.function is not None:
                                slot["name"] += call.function.name or ""
                                slot["arguments"] += call.function.arguments or ""
                        if choice.finish_reason:
                            finish = choice.finish_reason
            except openai.APITimeoutError:
                raise  # the time its task allows ran out: reported as such
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc.__context__ or exc
                raise self._cut(parts, f"the connection broke ({type(cause).__name__}: {cause})") from None
        finally:
            await stream.close()
        if finish is None:
            # No finish reason: the server (or a proxy) stopped mid-answer. What came is not the answer.
            raise self._cut(parts, "the stream ended before the model finished (no finish_reason)")
        tool_calls = [ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
                      for i, c in sorted(calls.items())]
        return ModelResponse(text="".join(parts) if parts or not tool_calls else None, tool_calls=tool_calls,
                             usage=usage, model=self.name, finish_reason=finish)


def _cut_error(model: str, url: str, parts: list[str], what: str) -> ModelError:
    received = sum(len(p) for p in parts)
    return ModelError(
        f"model '{model}' at {url}: {what} after {received} characters of a streamed answer: the partial "
        "answer is not used; give the task a retry_config to ask again",
        retryable=True, model=model, endpoint=url)


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(int(getattr(raw, "prompt_tokens", 0) or 0), int(getattr(raw, "completion_tokens", 0) or 0))


def _about_response_format(exc: BaseException) -> bool:
    text = str(getattr(exc, "message", "") or exc).lower()
    return "response_format" in text or "json_schema" in text

