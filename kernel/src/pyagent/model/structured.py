"""Structured output: the JSON schema a model's answer must match, and reading the answer back.

``agent("...", output_type=Invoice)`` sends Invoice's JSON schema with the request (a server
with JSON-schema decoding enforces it) and validates the reply with pydantic. Any type pydantic
can validate works: a model, a dataclass, ``list[str]``, ``Literal[...]``. A schema whose root
is not an object (servers require one) is wrapped as ``{"result": ...}`` and unwrapped again.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pyagent.errors import ConfigurationError
from pyagent.model.language import OutputSpec

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


class OutputShape:
    """How to ask for ``output_type`` and how to read a reply as one."""

    __slots__ = ("adapter", "output_type", "spec", "wrapped")

    def __init__(self, output_type: Any) -> None:
        self.output_type = output_type
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = self.adapter.json_schema()
        except Exception as exc:
            raise ConfigurationError(
                f"output_type={output_type!r} has no JSON schema ({type(exc).__name__}: {exc}): pass a "
                "pydantic model, a dataclass or a type such as list[str]"
            ) from None
        self.wrapped = schema.get("type") != "object"
        if self.wrapped:
            defs = schema.pop("$defs", None)
            schema = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
            if defs:
                schema["$defs"] = defs
        name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(output_type, "__name__", "") or "output")[:64] or "output"
        strict_schema, strict = _strict(schema)
        self.spec = OutputSpec(name=name, schema=strict_schema if strict else schema, strict=strict)

    def parse(self, text: str) -> Any:
        """The reply as ``output_type``, or a ValueError saying what does not match."""
        data = _json_in(text)
        if self.wrapped and isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]
        try:
            return self.adapter.validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the answer'}: {e['msg']}"
                                 for e in exc.errors()[:10])
            raise ValueError(problems) from None


def _json_in(text: str) -> Any:
    """The JSON value in a reply: bare, in a code fence, or the outermost object/array in prose."""
    stripped = (text or "").strip()
    candidates = [stripped]
    candidates += [m.strip() for m in _FENCE.findall(stripped)]
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = stripped.find(open_), stripped.rfind(close)
        if 0 <= start < end:
            candidates.append(stripped[start: end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    shown = stripped if len(stripped) <= 200 else stripped[:200] + "..."
    raise ValueError(f"the reply is not JSON: {shown!r}")


def _strict(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema made fit for strict decoding (no additional properties), and whether it is.

    Strict decoding requires every property to be required; a schema with optional fields
    is sent as it is, as guidance, and the reply is validated here either way.
    """
    out = copy.deepcopy(schema)
    ok = True

    def visit(node: Any) -> None:
        nonlocal ok
        if isinstance(node, dict):
            props = node.get("properties")
            if node.get("type") == "object" and isinstance(props, dict):
                if set(node.get("required", [])) != set(props):
                    ok = False
                node.setdefault("additionalProperties", False)
            elif node.get("type") == "object" and "additionalProperties" in node and node["additionalProperties"] is not False:
                ok = False  # a free-form dict cannot be strict
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(out)
    return out, ok
