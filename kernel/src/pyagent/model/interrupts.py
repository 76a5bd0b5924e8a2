"""Questions a run asks people (``ctx.interrupt``): what is asked, and what an answer must be.

A question is asked by a task's agent with ``await ctx.interrupt(question, schema=...)``. The
first time, the run records the question and the task pauses (status ``waiting``); once an
answer is recorded, the task runs again from its start and the same call returns the answer.
So each call is identified by *where* it is asked, not by a value it carries: the task's name
and the call's position among the task's questions (0 for its first ``ctx.interrupt``, 1 for
the next, ...), plus the escalation level (0 for the question itself, 1 for the question it
escalated to, ...). The store keeps one row per (run, task, position, level) with a random
id, so the id is stable across re-executions and cannot be guessed.

What an answer must be is a JSON schema, derived from ``schema=`` (a pydantic model or any type
pydantic validates, or a JSON schema given as a dict). The schema travels with the question,
so a process that only answers (``pyagent approve``, the webhook endpoint) checks the answer
without the workflow's code: :func:`validate_answer` covers what pydantic writes into its
schemas (types, properties, required, enums, constants, unions, references, bounds, lengths,
patterns, item lists); other keywords are not checked there, and the task converts the answer
with the schema itself when it runs again.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pyagent.errors import ConfigurationError

OnTimeout = Literal["fail", "default"]
#: Statuses of a question: still open, or how it was resolved.
PENDING, ANSWERED, EXPIRED, ESCALATED = "pending", "answered", "expired", "escalated"
STATUSES = (PENDING, ANSWERED, EXPIRED, ESCALATED)
#: ``answered_by`` of an answer the timeout gave (``on_timeout="default"``) and of an expiry.
BY_TIMEOUT = "timeout"


class Approval(BaseModel):
    """The default answer of an :class:`~pyagent.ApprovalTask`: approved or not, with a comment."""

    approved: bool
    comment: str = ""


class Escalation(BaseModel):
    """The question asked when another times out (``ctx.interrupt(..., escalate_to=Escalation(...))``).

    ``timeout`` defaults to the escalated question's; ``on_timeout``, ``default`` and a further
    ``escalate_to`` say what happens when this one times out too. ``metadata`` is shown with
    the question (e.g. ``{"assignee": "finance-lead"}``). The answer's schema is the escalated
    question's.
    """

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0)
    on_timeout: OnTimeout = "fail"
    default: Any = None
    escalate_to: Escalation | str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Interrupt(BaseModel):
    """A question a run asked a person, and its answer once there is one.

    ``id`` is what an answer names; ``task`` asked it (``position``: its first, second, ...
    question); ``schema`` is the JSON schema an answer must match; ``asked_at`` and
    ``deadline`` are epoch seconds (``deadline`` None: no timeout). ``status`` is ``pending``,
    ``answered``, ``expired`` (timed out with ``on_timeout="fail"``) or ``escalated`` (timed
    out and replaced by the question ``escalated_to``); ``level`` counts escalations (a
    question with ``level`` 1 escalates the ``escalates`` one). ``answered_by`` is who answered
    (``"timeout"`` for a default the timeout gave).
    """

    model_config = ConfigDict(populate_by_name=True)

    id: str
    run_id: str
    workflow: str = ""
    task: str = ""
    position: int = 0
    level: int = 0
    status: str = PENDING
    question: str = ""
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    asked_at: float = 0.0
    deadline: float | None = None
    timeout: float | None = None
    on_timeout: OnTimeout = "fail"
    default: Any = None
    escalate_to: dict[str, Any] | None = None
    escalates: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    key: str | None = None
    occurrence: int = 0
    answer: Any = None
    answered_by: str | None = None
    answered_at: float | None = None

    @property
    def schema(self) -> dict[str, Any]:  # type: ignore[override]
        """The JSON schema an answer must match (``{}``: any JSON value)."""
        return self.schema_

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``pyagent pending --json``, the webhook API)."""
        return self.model_dump(mode="json", by_alias=True)

    def __repr__(self) -> str:
        return (f"Interrupt(id={self.id!r}, run_id={self.run_id!r}, task={self.task!r}, status={self.status}, "
                f"question={self.question[:60]!r})")


class WaitingForAnswer(BaseException):
    """Raised by ``ctx.interrupt`` when its question has no answer yet: the task pauses.

    A BaseException, so an agent's ``except Exception`` does not swallow the pause; the
    engine catches it around the task. Never retried, never handed to a fallback agent.
    """

    def __init__(self, interrupt: Interrupt) -> None:
        super().__init__(f"task {interrupt.task!r} is waiting for an answer to {interrupt.question!r} "
                         f"(interrupt {interrupt.id})")
        self.interrupt = interrupt


# -- what is asked ---------------------------------------------------------------------------


class Question:
    """One ``ctx.interrupt`` call's arguments, checked: the question, its schemas and timeout policy."""

    __slots__ = ("default", "escalate_to", "json_schema", "key", "metadata", "on_timeout", "question", "schema",
                 "timeout")

    def __init__(self, question: str, *, schema: Any = None, timeout: float | None = None,
                 on_timeout: str = "fail", default: Any = None, escalate_to: Any = None,
                 metadata: dict[str, Any] | None = None, key: str | None = None) -> None:
        if not isinstance(question, str) or not question.strip():
            raise ConfigurationError(f"ctx.interrupt needs the question as a non-empty string, got {question!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(f"key={key!r}: give a non-empty string naming the question, or leave it out")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0 or not math.isfinite(timeout)):
            raise ConfigurationError(f"timeout={timeout!r}: give the seconds to wait for an answer (> 0), or None")
        if on_timeout not in ("fail", "default"):
            raise ConfigurationError(f"on_timeout={on_timeout!r}: use 'fail' (the task fails) or 'default' "
                                     "(the answer is default=...)")
        if escalate_to is not None and on_timeout != "fail":
            raise ConfigurationError("give either escalate_to=... (a second question when this one times out) "
                                     "or on_timeout='default', not both")
        if timeout is None and (escalate_to is not None or on_timeout != "fail"):
            raise ConfigurationError("on_timeout and escalate_to need timeout=SECONDS: without a timeout the "
                                     "question waits until it is answered")
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigurationError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.question = question
        self.schema = schema
        self.json_schema = json_schema_of(schema)
        self.timeout = None if timeout is None else float(timeout)
        self.on_timeout = on_timeout
        self.default = jsonable_answer(default) if on_timeout == "default" else None
        if on_timeout == "default":
            problems = validate_answer(self.default, self.json_schema)
            if problems:
                raise ConfigurationError(f"default={default!r} does not match the question's schema: "
                                         f"{'; '.join(problems)}")
        self.escalate_to = _escalation(escalate_to, self.timeout)
        self.metadata = dict(metadata or {})
        self.key = key

    @property
    def identity(self) -> str:
        """What tells this question from the task's others when the task runs again: its key, else its text."""
        return self.key if self.key is not None else self.question

    def describe(self) -> dict[str, Any]:
        """What the store keeps about the question (JSON-able)."""
        return {"question": self.question, "schema": self.json_schema, "timeout": self.timeout,
                "on_timeout": self.on_timeout, "default": self.default, "escalate_to": self.escalate_to,
                "metadata": self.metadata, "key": self.key}


def _escalation(value: Any, timeout: float | None) -> dict[str, Any] | None:
    """``escalate_to`` as plain data: the next question, with its own timeout and policy."""
    if value is None:
        return None
    if isinstance(value, str):
        value = Escalation(question=value)
    elif isinstance(value, dict):
        value = Escalation.model_validate(value)
    if not isinstance(value, Escalation):
        raise ConfigurationError(f"escalate_to must be a question (a string) or an Escalation(...), got {value!r}")
    data = value.model_dump(mode="json")
    data["timeout"] = data["timeout"] or timeout
    if data["on_timeout"] != "default":
        data["default"] = None
    nested = value.escalate_to
    data["escalate_to"] = _escalation(nested, data["timeout"]) if nested is not None else None
    return data


def escalated(parent: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """What is asked when a question with ``parent`` data (see :meth:`Question.describe`) escalates."""
    nxt = parent["escalate_to"]
    return {"question": nxt["question"], "schema": schema, "timeout": nxt["timeout"],
            "on_timeout": nxt["on_timeout"], "default": nxt.get("default"),
            "escalate_to": nxt.get("escalate_to"), "metadata": nxt.get("metadata") or {}}


# -- schemas and answers ---------------------------------------------------------------------


def json_schema_of(schema: Any) -> dict[str, Any]:
    """The JSON schema of ``schema=`` (a type pydantic validates, a JSON schema dict, or None: any value)."""
    if schema is None:
        return {}
    if isinstance(schema, dict):
        return dict(schema)
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(schema).json_schema()
    except Exception as exc:
        raise ConfigurationError(f"schema={schema!r} has no JSON schema ({type(exc).__name__}: {exc}): "
                                 "use a pydantic model, a JSON-friendly type (bool, int, Literal[...]) "
                                 "or a JSON schema dict") from None


def jsonable_answer(value: Any) -> Any:
    """An answer as JSON data (a pydantic model is dumped); ValueError for what JSON cannot hold."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"an answer must be JSON data (objects, lists, strings, numbers, true/false, "
                                 f"null), got {type(value).__name__}: {exc}") from None
    return json.loads(text)


def convert(value: Any, schema: Any) -> Any:
    """The answer as the asking code wants it: validated into ``schema`` when it is a type."""
    if schema is None or isinstance(schema, dict):
        return value
    from pydantic import TypeAdapter

    return TypeAdapter(schema).validate_python(value)


_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(kind)
    return True if expected is None else isinstance(value, expected)


def validate_answer(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``value`` fails ``schema``, as ``"<path>: <problem>"`` lines (empty: it matches)."""
    problems: list[str] = []
    _check(value, schema, schema, "answer", problems)
    return problems


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _check(value: Any, schema: Any, root: dict[str, Any], path: str, out: list[str]) -> None:
    if schema is True or schema is None:
        return
    if schema is False:
        out.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        _check(value, _resolve(str(schema["$ref"]), root), root, path, out)
    for sub in schema.get("allOf", ()):
        _check(value, sub, root, path, out)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            results = []
            for sub in options:
                found: list[str] = []
                _check(value, sub, root, path, found)
                results.append(found)
            passing = sum(1 for r in results if not r)
            if passing == 0:
                detail = "; ".join(results[0][:2]) if len(results) == 1 else " | ".join(
                    r[0].split(": ", 1)[-1] for r in results if r)
                out.append(f"{path}: matches none of the allowed forms ({detail})")
            elif key == "oneOf" and passing > 1:
                out.append(f"{path}: matches more than one of the allowed forms")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {', '.join(json.dumps(v) for v in schema['enum'])}")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(value, k) for k in kinds):
            out.append(f"{path}: must be {' or '.join(_article(k) for k in kinds)}, got {_name(value)}")
            return
    if isinstance(value, dict):
        _check_object(value, schema, root, path, out)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, out)
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: must have at most {schema['maxLength']} characters")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                if re.search(pattern, value) is None:
                    out.append(f"{path}: must match the pattern {pattern!r}")
            except re.error:
                pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, word in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
                          ("exclusiveMaximum", "<")):
            bound = schema.get(key)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool) and not _within(value, word, bound):
                out.append(f"{path}: must be {word} {bound:g}")
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step and not float(value / step).is_integer():
            out.append(f"{path}: must be a multiple of {step:g}")


def _within(value: float, word: str, bound: float) -> bool:
    if word == ">=":
        return value >= bound
    if word == "<=":
        return value <= bound
    if word == ">":
        return value > bound
    return value < bound


def _check_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str,
                  out: list[str]) -> None:
    props = schema.get("properties") or {}
    for name in schema.get("required", ()):
        if name not in value:
            out.append(f"{path}.{name}: is required")
    patterns = schema.get("patternProperties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in props:
            _check(item, props[key], root, where, out)
            continue
        matched = False
        for pattern, sub in patterns.items():
            try:
                if re.search(pattern, key):
                    matched = True
                    _check(item, sub, root, where, out)
            except re.error:
                continue
        if matched:
            continue
        if extra is False:
            out.append(f"{where}: is not an allowed field (allowed: {', '.join(props) or 'none'})")
        elif isinstance(extra, dict):
            _check(item, extra, root, where, out)
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        out.append(f"{path}: must have at least {schema['minProperties']} fields")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        out.append(f"{path}: must have at most {schema['maxProperties']} fields")


def _check_array(value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str,
                 out: list[str]) -> None:
    prefix = schema.get("prefixItems") or []
    for i, sub in enumerate(prefix[: len(value)]):
        _check(value[i], sub, root, f"{path}[{i}]", out)
    items = schema.get("items")
    if isinstance(items, (dict, bool)):
        for i in range(len(prefix), len(value)):
            _check(value[i], items, root, f"{path}[{i}]", out)
    if "minItems" in schema and len(value) < schema["minItems"]:
        out.append(f"{path}: must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        out.append(f"{path}: must have at most {schema['maxItems']} items")
    if schema.get("uniqueItems"):
        seen = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(seen)) != len(seen):
            out.append(f"{path}: items must be unique")


def _article(kind: str) -> str:
    return {"object": "an object", "array": "a list", "integer": "an integer", "null": "null"}.get(kind, f"a {kind}")


def _name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)
