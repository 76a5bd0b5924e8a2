"""What passes between an instruction agent and a language model.

The agent sends a :class:`ModelRequest` (chat messages in the OpenAI chat-completions shape,
the tools it may call, the JSON schema its answer must match, a callback for streamed text)
and the model returns a :class:`ModelResponse` (text, tool calls, token usage). That shape is
what every OpenAI-compatible server speaks, so a provider plugin translates little, and a
scripted model for tests needs no translation at all.

Plain slotted dataclasses, not pydantic models: one request and one response are made per
model call, and a thousand-branch fan-out makes thousands.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, Any]]


@dataclass(slots=True)
class Usage:
    """Tokens one or more model calls consumed; ``cost`` (USD) when a price is known."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` to this total in place (a cost stays None only while every part is unpriced)."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def __add__(self, other: Usage) -> Usage:
        total = Usage(self.input_tokens, self.output_tokens, self.cost, self.requests)
        total.add(other)
        return total

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                                "requests": self.requests}
        if self.cost is not None:
            data["cost"] = self.cost
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(int(data.get("input_tokens", 0)), int(data.get("output_tokens", 0)),
                   data.get("cost"), int(data.get("requests", 0)))


@dataclass(slots=True)
class ToolCall:
    """A model's request to call one tool. ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str = "{}"

    def to_message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description and the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(slots=True)
class OutputSpec:
    """The JSON schema an answer must match (structured output).

    ``strict`` is True when the schema meets the rules of strict JSON-schema decoding (every
    property required, no additional properties), so a server may enforce it exactly.
    """

    name: str
    schema: dict[str, Any]
    strict: bool = False


@dataclass(slots=True)
class ModelRequest:
    """One call of a model: the conversation so far and what the answer may or must contain.

    ``on_delta`` is set when the agent streams: the model calls it with each piece of text as
    it arrives, and still returns the whole text in its response. ``timeout`` is the time left
    (seconds) before the enclosing task or pattern gives up, or None.
    """

    messages: Messages
    tools: list[ToolSpec] = field(default_factory=list)
    output: OutputSpec | None = None
    on_delta: Callable[[str], None] | None = None
    timeout: float | None = None
    agent: str = ""

    @property
    def prompt(self) -> str:
        """The last user message's text (what a scripted model answers)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


@dataclass(slots=True)
class ModelResponse:
    """What a model answered: text, or tool calls to run before it answers, and the tokens used."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    model: str = ""
    finish_reason: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The assistant message that goes back into the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [c.to_message() for c in self.tool_calls]
        return message


@runtime_checkable
class Model(Protocol):
    """A language model: takes a request (messages, tools, output schema), returns a response.

    ``name`` identifies it in usage events and price tables (``"openai:gpt-4o-mini"``). A model
    may instead offer only ``async complete(messages) -> str`` (the protocol before tools);
    such a model answers plain instruction agents but cannot call tools.
    """

    name: str

    async def respond(self, request: ModelRequest) -> ModelResponse: ...


async def ask(model: Any, request: ModelRequest) -> ModelResponse:
    """Call ``model`` with ``request``, through ``respond`` or, for a text-only model, ``complete``."""
    respond = getattr(model, "respond", None)
    if respond is not None:
        response = respond(request)
        if inspect.isawaitable(response):
            response = await response
        if not isinstance(response, ModelResponse):
            raise TypeError(f"model {getattr(model, 'name', model)!r}: respond() returned "
                            f"{type(response).__name__}, not a ModelResponse")
        return response
    if request.tools:
        from pyagent.errors import ConfigurationError

        raise ConfigurationError(
            f"model {getattr(model, 'name', model)!r} only has complete(messages) and cannot call tools: "
            "give it respond(request) (see pyagent.plugin.ModelRequest) or use a model plugin that does"
        )
    text = await model.complete(request.messages)
    if request.on_delta is not None and text:
        request.on_delta(text)
    return ModelResponse(text=text, model=str(getattr(model, "name", "")))


def render_json(value: Any) -> str:
    """A tool result or scripted answer as the text a model reads: strings as they are, data as JSON."""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
