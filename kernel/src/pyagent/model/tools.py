"""Tools: plain Python functions an instruction agent's model may call.

``agent("...", tools=[get_invoice, refund])`` wraps each function in a :class:`Tool`. Its JSON
schema comes from the type hints (through pydantic, so ``int``, ``Literal``, pydantic models,
``list[str]``, defaults all work) and its descriptions from the docstring: the first paragraph
describes the tool, and an ``Args:`` section (Google style), ``:param x:`` lines (Sphinx) or a
``Parameters`` section (NumPy) describe the arguments. The kernel parses docstrings itself
rather than take a dependency for it: its runtime dependencies are kept to a handful.

A tool may be sync or async. A sync tool runs in a worker thread, so that the calls a model
asks for at once run concurrently and a slow one does not stall the event loop; a task's
timeout or cancellation leaves that thread to finish in the background. A parameter
named ``ctx`` or ``context`` receives the run context and is not shown to the model.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from pyagent.errors import ConfigurationError
from pyagent.model.language import ToolSpec

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Other Parameters|Returns?|Raises|"
                      r"Yields?|Examples?|Notes?|See Also|Attributes)\s*:?\s*$", re.I)
_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "other parameters"}
# "name (type): text" (Google), "name: text", or "name : type" (NumPy, text on the lines below).
_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ARG = re.compile(r"^\*{0,2}\w+\s+:")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_RULE = re.compile(r"^\s*-{3,}\s*$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary paragraph and the per-argument descriptions of a docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    summary: list[str] = []
    i = 0
    while i < len(lines) and lines[i].strip() and not _SECTION.match(lines[i]) and not _SPHINX_ARG.match(lines[i]):
        summary.append(lines[i].strip())
        i += 1
    params: dict[str, str] = {}
    section: str | None = None
    base: int | None = None
    current: str | None = None
    for line in lines[i:]:
        if not line.strip() or _RULE.match(line):
            continue
        indent = len(line) - len(line.lstrip())
        head = _SECTION.match(line)
        if head and indent == 0:
            section, base, current = head.group(1).lower(), None, None
            continue
        sphinx = _SPHINX_ARG.match(line)
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            continue
        if section not in _ARG_SECTIONS:
            if current is not None and line.lstrip().startswith(":"):
                current = None  # another Sphinx field (":returns:") ends the parameter's text
            elif current is not None and section is None:
                params[current] = f"{params[current]} {line.strip()}".strip()
            continue
        if base is None:
            base = indent
        arg = _ARG.match(line.strip()) if indent <= base else None
        if arg:
            current = arg.group(1)
            # "name : type" (NumPy): the description is on the lines below, not the type.
            params[current] = "" if _NUMPY_ARG.match(line.strip()) else arg.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return " ".join(summary), params


class Tool:
    """A function the model may call, with the JSON schema of its arguments.

    ``Tool(fn)`` or ``tool(fn)``; ``name=`` and ``description=`` override what the function
    says about itself.
    """

    __slots__ = ("args_model", "context_param", "description", "fn", "is_async", "name", "parameters")

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        if not callable(fn):
            raise ConfigurationError(f"a tool must be a function, got {type(fn).__name__}: pass tools=[my_function]")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ConfigurationError(
                f"tool name {self.name!r} is not allowed: models accept 1-64 letters, digits, '_' or '-'; "
                "pass Tool(fn, name='get_invoice')"
            )
        summary, param_docs = parse_docstring(inspect.getdoc(fn) or "")
        self.description = description if description is not None else summary
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None))  # noqa: B004 - callable objects with async __call__
        self.context_param: str | None = None
        self.args_model: type[BaseModel] | None = self._args_model(fn, param_docs)
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        self.parameters: dict[str, Any] = schema

    def _args_model(self, fn: Callable[..., Any], docs: dict[str, str]) -> type[BaseModel]:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"tool {self.name!r}: cannot read its signature ({exc})") from None
        try:
            hints = _type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(
                f"tool {self.name!r}: its type hints cannot be resolved ({type(exc).__name__}: {exc}); "
                "import the types it names at module level"
            ) from None
        fields: dict[str, Any] = {}
        for param in sig.parameters.values():
            if param.name in ("ctx", "context"):
                self.context_param = param.name
                continue
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise ConfigurationError(
                    f"tool {self.name!r} takes *{param.name}: a model calls a tool with named arguments, "
                    "so give every argument a name and a type"
                )
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ConfigurationError(
                    f"tool {self.name!r}: argument {param.name!r} is positional-only; a model passes "
                    "arguments by name, so remove the '/'"
                )
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, FieldInfo(default=default, description=docs.get(param.name) or None))
        try:
            return create_model(f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        except Exception as exc:
            raise ConfigurationError(
                f"tool {self.name!r}: its arguments have no JSON schema ({type(exc).__name__}: {exc}); "
                "annotate them with JSON-friendly types (str, int, float, bool, lists, dicts, pydantic models)"
            ) from None

    @classmethod
    def from_schema(cls, name: str, description: str, parameters: dict[str, Any],
                    call: Callable[[dict[str, Any], Any], Awaitable[Any]]) -> Tool:
        """A tool described by a JSON schema rather than a Python signature (a remote server's tool).

        ``call(arguments, ctx)`` is awaited with the arguments the model gave, decoded but not
        validated: the tool's owner validates them against its own schema.
        """
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ConfigurationError(
                f"tool name {name!r} is not allowed: models accept 1-64 letters, digits, '_' or '-'"
            )
        tool = cls.__new__(cls)
        tool.fn = call
        tool.name = name
        tool.description = description
        tool.is_async = True
        tool.context_param = None
        tool.args_model = None
        tool.parameters = dict(parameters) if parameters else {"type": "object", "properties": {}}
        return tool

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def parse(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """The validated keyword arguments for one call, or a ValueError that explains what is wrong."""
        if arguments is None or arguments == "":
            data: Any = {}
        elif isinstance(arguments, str):
            try:
                data = json.loads(arguments)
            except ValueError as exc:
                raise ValueError(f"the arguments are not valid JSON ({exc}): {arguments[:200]!r}") from None
        else:
            data = arguments
        if not isinstance(data, dict):
            raise ValueError(f"the arguments must be a JSON object, got {type(data).__name__}")
        if self.args_model is None:  # a schema tool: its owner validates
            return data
        try:
            model = self.args_model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(model, name) for name in self.args_model.model_fields}

    async def call(self, kwargs: dict[str, Any], ctx: Any = None) -> Any:
        """Run the tool with validated arguments (a sync tool in a worker thread)."""
        if self.args_model is None:
            return await self.fn(kwargs, ctx)
        if self.context_param is not None:
            kwargs = {**kwargs, self.context_param: ctx}
        if self.is_async:
            return await self.fn(**kwargs)
        import functools

        import anyio.to_thread

        # Abandoned on cancellation, as a thread=True agent is: a blocking tool must not hold
        # its task past the task's timeout (the thread finishes in the background).
        result = await anyio.to_thread.run_sync(functools.partial(self.fn, **kwargs), abandon_on_cancel=True)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    return typing.get_type_hints(target, include_extras=True)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Make a :class:`Tool` from a function; ``@tool`` and ``@tool(name=...)`` decorate."""
    if fn is None:
        return lambda f: Tool(f, name=name, description=description)
    return Tool(fn, name=name, description=description)


def as_tools(values: Any) -> list[Tool]:
    """``tools=`` as a list of tools with distinct names, or a ConfigurationError naming the problem.

    Tool sources (see :mod:`pyagent.model.toolsource`) are left out: :func:`split_tools` keeps them.
    """
    return split_tools(values)[0]


def split_tools(values: Any) -> tuple[list[Tool], list[Any]]:
    """``tools=`` as (the tools, the tool sources whose tools are found when the agent runs)."""
    from pyagent.model.toolsource import is_tool_source

    if values is None:
        return [], []
    if (callable(values) or is_tool_source(values) or isinstance(values, (str, bytes))
            or not hasattr(values, "__iter__")):
        raise ConfigurationError(f"tools= must be a list of functions, got {values!r}: e.g. tools=[get_invoice]")
    sources = [v for v in values if is_tool_source(v)]
    tools = [v if isinstance(v, Tool) else Tool(v) for v in values if not is_tool_source(v)]
    check_distinct(tools)
    return tools, sources


def check_distinct(tools: list[Tool], *, hint: str = "wrap one as Tool(fn, name='other_name')") -> None:
    """Refuse two tools of one name: the model calls tools by name."""
    names = [t.name for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(
            f"two tools are named {', '.join(dupes)}: the model calls tools by name, so {hint}"
        )
