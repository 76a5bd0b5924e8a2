"""Forms for the questions runs ask: one field per part of the answer's JSON schema, and back.

:func:`fields_of` turns a question's JSON schema (what ``ctx.interrupt(schema=...)`` recorded:
pydantic's schemas, or one given as a dict) into :class:`Field` s the approvals page renders:

- ``string``: a text input (a text area for long ones); ``integer`` and ``number``: a number
  input; ``boolean``: yes / no; ``enum`` (and unions of constants): a select;
- an ``object`` with ``properties``: a group of fields, nested up to :data:`MAX_DEPTH`;
- an ``array`` of scalars: one item per line, or checkboxes when the items are an enum;
- ``null`` in a union (``str | None``): the field may stay empty;
- anything else (a mapping, a list of objects, a union of several types), and deeper nesting:
  a JSON text area for that part; a question without a schema: one free field, read as JSON
  when it is JSON (``true``, ``42``, ``{"a": 1}``) and as text otherwise.

:func:`answer_of` reads a submitted form back into the answer, and says what could not be read
(a number that is not one, JSON that does not parse) by field. A field left empty is not
given: left out of its object, so a required one is reported missing (and ``null`` when the
schema allows it). Whether the answer matches the
schema (required fields, bounds, patterns) is the kernel's check, made when it is recorded:
:func:`place_problems` puts its messages (``answer.amount: must be <= 500``) by their fields.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

#: The form field of the answer itself; a property ``comment`` of an object answer is ``answer.comment``.
ROOT = "answer"
#: Objects nested deeper than this are one JSON field.
MAX_DEPTH = 4
#: Strings longer than this (``maxLength``) get a text area.
LONG_TEXT = 200
MISSING: Any = object()
SCALARS = ("string", "integer", "number", "boolean")


@dataclass
class Option:
    label: str
    value: Any


@dataclass
class Field:
    """One input of a question's form (or a group of them, for an object)."""

    name: str
    label: str
    kind: str  # text, textarea, integer, number, boolean, select, checks, lines, object, const, json, free
    required: bool = False
    nullable: bool = False
    description: str = ""
    default: Any = MISSING
    options: list[Option] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    item: str = "string"  # lines: the items' type
    attrs: dict[str, Any] = field(default_factory=dict)  # hints for the input: min, max, step, ...
    const: Any = None

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def initial(self) -> str:
        """The text the input starts with (the schema's default)."""
        if not self.has_default or self.default is None:
            return ""
        if self.kind in ("json", "free"):
            return self.default if isinstance(self.default, str) and self.kind == "free" else json.dumps(
                self.default, ensure_ascii=False, indent=2)
        if self.kind == "lines":
            return "\n".join(str(v) for v in self.default) if isinstance(self.default, list) else ""
        if self.kind == "boolean":
            return "true" if self.default is True else "false" if self.default is False else ""
        if self.kind == "select":
            for i, option in enumerate(self.options):
                if option.value == self.default:
                    return str(i)
            return ""
        return str(self.default)

    def chosen(self, i: int) -> bool:
        """Whether checkbox ``i`` starts ticked (the schema's default holds its value)."""
        return self.has_default and isinstance(self.default, list) and self.options[i].value in self.default

    def walk(self) -> list[Field]:
        return [self, *(f for child in self.children for f in child.walk())]


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``$ref`` (into the root's ``$defs``) and a lone ``allOf`` followed."""
    seen = 0
    while isinstance(schema, dict) and seen < 16:
        seen += 1
        if "$ref" in schema:
            target = _lookup(str(schema["$ref"]), root)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest}
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**_resolve(all_of[0], root), **rest}
            continue
        break
    return schema if isinstance(schema, dict) else {}


def _lookup(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref[2:].split("/") if ref.startswith("#/") else []:
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _label(name: str, schema: dict[str, Any]) -> str:
    title = schema.get("title")
    return str(title) if isinstance(title, str) and title else name


def fields_of(schema: dict[str, Any] | None) -> Field:
    """The form of an answer matching ``schema`` (``{}`` or None: any value, one free field)."""
    schema = schema if isinstance(schema, dict) else {}
    return _field(schema, schema, ROOT, "Answer", required=True, depth=0)


def _field(schema: Any, root: dict[str, Any], name: str, label: str, *, required: bool, depth: int) -> Field:
    if schema is True or schema is None:
        schema = {}
    s = _resolve(schema, root)
    label = _label(label, s)
    common: dict[str, Any] = {"name": name, "label": label, "required": required,
                              "description": str(s.get("description") or "")}
    if "default" in s:
        common["default"] = s["default"]
    if "const" in s:
        return Field(kind="const", const=s["const"], **common)
    if isinstance(s.get("enum"), list) and s["enum"]:
        return Field(kind="select", options=_options(s["enum"]), nullable=None in s["enum"], **common)
    union = s.get("anyOf") or s.get("oneOf")
    if isinstance(union, list) and union:
        options = [_resolve(o, root) for o in union]
        nullable = any(o.get("type") == "null" for o in options)
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            inner = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf")}
            found = _field({**rest[0], **inner}, root, name, label, required=required, depth=depth)
            found.nullable = found.nullable or nullable
            return found
        constants = [o["const"] if "const" in o else o.get("enum") for o in rest]
        if rest and all("const" in o or isinstance(o.get("enum"), list) for o in rest):
            values: list[Any] = []
            for c, o in zip(constants, rest, strict=True):
                values += list(c or []) if "enum" in o and "const" not in o else [c]
            return Field(kind="select", options=_options(values), nullable=nullable, **common)
        return Field(kind="json", nullable=nullable, **common)
    kind = s.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        rest_kinds = [k for k in kind if k != "null"]
        kind = rest_kinds[0] if len(rest_kinds) == 1 else ("json" if rest_kinds else "null")
    if kind == "string":
        long = (isinstance(s.get("maxLength"), int) and s["maxLength"] > LONG_TEXT) or s.get("format") == "textarea"
        attrs: dict[str, Any] = {k: s[k] for k in ("minLength", "maxLength", "pattern") if k in s}
        fmt = s.get("format")
        if fmt in ("date", "email"):
            attrs["type"] = fmt
        return Field(kind="textarea" if long else "text", nullable=nullable, attrs=attrs, **common)
    if kind in ("integer", "number"):
        bounds: dict[str, Any] = {"step": "1" if kind == "integer" else "any"}
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(s.get(key), (int, float)) and not isinstance(s.get(key), bool):
                bounds[attr] = s[key]
        return Field(kind=kind, nullable=nullable, attrs=bounds, **common)
    if kind == "boolean":
        return Field(kind="boolean", nullable=nullable, **common)
    if kind == "object" or (kind is None and isinstance(s.get("properties"), dict)):
        props = s.get("properties")
        if isinstance(props, dict) and props and depth < MAX_DEPTH:
            needed = set(s.get("required") or ())
            children = [_field(sub, root, f"{name}.{key}", str(key), required=key in needed, depth=depth + 1)
                        for key, sub in props.items()]
            return Field(kind="object", nullable=nullable, children=children, **common)
        return Field(kind="json", nullable=nullable, **common)
    if kind == "array":
        items = _resolve(s.get("items"), root) if isinstance(s.get("items"), dict) else {}
        if isinstance(items.get("enum"), list) and items["enum"] and "prefixItems" not in s:
            return Field(kind="checks", options=_options(items["enum"]), nullable=nullable, **common)
        item_kind = items.get("type")
        if item_kind in ("string", "integer", "number") and "prefixItems" not in s:
            return Field(kind="lines", item=item_kind, nullable=nullable, **common)
        return Field(kind="json", nullable=nullable, **common)
    if kind == "null":
        return Field(kind="const", const=None, **common)
    if kind is None and not any(k in s for k in ("anyOf", "oneOf", "allOf", "not", "items")):
        return Field(kind="free", **common)
    return Field(kind="json", nullable=nullable, **common)


def _options(values: list[Any]) -> list[Option]:
    return [Option(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False), v) for v in values]


# -- reading a submitted form back ------------------------------------------------------------


def answer_of(form: Field, data: dict[str, str]) -> tuple[Any, dict[str, list[str]]]:
    """The answer a submitted form gives, and what could not be read, by field name.

    A field left empty is left out of its object (the schema says whether it may be); the
    answer itself left empty is a problem.
    """
    problems: dict[str, list[str]] = {}
    value = _read(form, data, problems)
    if value is MISSING:
        problems.setdefault(form.name, []).append("an answer is needed" if form.kind not in ("object",)
                                                  else "fill in the form")
        value = None
    return value, problems


def _read(f: Field, data: dict[str, str], problems: dict[str, list[str]]) -> Any:
    def problem(text: str) -> Any:
        problems.setdefault(f.name, []).append(text)
        return MISSING

    raw = data.get(f.name, "")
    if f.kind == "object":
        out = {}
        for child in f.children:
            got = _read(child, data, problems)
            if got is not MISSING:
                out[child.name.rsplit(".", 1)[-1]] = got
        return out
    if f.kind == "const":
        return f.const
    if f.kind == "checks":
        ticked = [o.value for i, o in enumerate(f.options) if data.get(f"{f.name}[{i}]")]
        return ticked if ticked or f.required else MISSING
    text = raw.replace("\r\n", "\n")
    if f.kind in ("text", "textarea"):
        if text == "":  # left empty: not given (a required field is then reported missing)
            return None if (f.nullable and f.required) else MISSING
        return text
    if text.strip() == "":
        return None if (f.nullable and f.required) else MISSING
    text = text.strip()
    if f.kind in ("integer", "number"):
        return _number(text, f.kind, problem)
    if f.kind == "boolean":
        if text in ("true", "false"):
            return text == "true"
        return problem(f"choose yes or no, not {text!r}")
    if f.kind == "select":
        try:
            return f.options[int(text)].value
        except (ValueError, IndexError):
            return problem(f"{text!r} is not one of the choices")
    if f.kind == "lines":
        items: list[Any] = []
        for n, line in enumerate(text.split("\n"), start=1):
            line = line.strip()
            if not line:
                continue
            if f.item == "string":
                items.append(line)
            else:
                got = _number(line, f.item, lambda t, n=n: problem(f"line {n}: {t}"))
                if got is not MISSING:
                    items.append(got)
        return items
    if f.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            return problem(f"is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): write it as JSON, "
                           'e.g. {"key": "value"} or ["a", "b"]')
    # free: JSON when it is JSON, text otherwise
    try:
        return json.loads(text)
    except ValueError:
        return raw.replace("\r\n", "\n")


def _number(text: str, kind: str, problem: Any) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    if kind == "integer":
        return problem(f"{text!r} is not a whole number")
    try:
        value = float(text)
    except ValueError:
        return problem(f"{text!r} is not a number")
    if not math.isfinite(value):
        return problem(f"{text!r} is not a finite number")
    return value


_PATH = re.compile(r"^(answer(?:[.\[][^:]*)?): (.*)$", re.S)


def place_problems(form: Field, messages: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The kernel's schema problems (``answer.amount: must be <= 500``) by the field they are about;
    those about no field of the form (or about the answer as a whole) are returned apart."""
    names = {f.name for f in form.walk()}
    placed: dict[str, list[str]] = {}
    general: list[str] = []
    for message in messages:
        found = _PATH.match(message)
        if found is None:
            general.append(message)
            continue
        path = re.sub(r"\[\d+\]", "", found.group(1))
        target = path
        while target not in names and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in names:
            placed.setdefault(target, []).append(found.group(2) if target == found.group(1) else message)
        else:
            general.append(message)
    return placed, general
