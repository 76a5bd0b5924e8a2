"""The guardrails users would otherwise write themselves: length, deny-list, JSON schema, PII.

Each returns a :class:`~pyagent.model.guardrails.Guardrail`; import them from
:mod:`pyagent.guardrails`. Text is looked for in strings and, recursively, in the values of
dicts and the items of lists and tuples, since agents often answer with structured data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from pyagent.errors import ConfigurationError, GuardrailError
from pyagent.model.guardrails import Guardrail, Replace


def _fields(value: Any) -> Iterator[tuple[str, Any]] | None:
    """The fields of a pydantic model or dataclass instance (a structured answer), else None."""
    if isinstance(value, BaseModel):
        names = list(type(value).model_fields)
        extra = value.__pydantic_extra__ or {}
        return iter([*((n, getattr(value, n)) for n in names), *extra.items()])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v)
    else:
        fields = _fields(value)
        if fields is not None:
            for _, v in fields:
                yield from _strings(v)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return len(json.dumps(value, default=_plain, ensure_ascii=False))


def max_length(limit: int, *, name: str | None = None, retry: bool = False) -> Guardrail:
    """Block a value longer than ``limit`` characters.

    Strings (and bytes) are measured as they are; any other value by its JSON text, so a dict
    answer is bounded as a whole. ``retry=True`` lets the task's retry policy ask again.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigurationError(f"max_length needs a whole number of characters >= 0, got {limit!r}")

    def check(value: Any) -> bool:
        size = _size(value)
        if size > limit:
            raise GuardrailError(f"is {size} characters long, over the limit of {limit}")
        return True

    return Guardrail(check, name=name or f"max_length({limit})", retry=retry)


def deny_regex(*patterns: str | re.Pattern[str], flags: int = 0, name: str | None = None,
               retry: bool = False) -> Guardrail:
    """Block a value in which any of ``patterns`` matches (``re.search``), in any string it holds.

    The reason names the pattern, not the text it matched, so the audit trail does not repeat
    what was kept out. Pass ``flags=re.IGNORECASE`` (or ``(?i)`` in a pattern) to ignore case.
    """
    if not patterns:
        raise ConfigurationError("deny_regex needs at least one pattern, e.g. deny_regex(r'(?i)password')")
    compiled = []
    for p in patterns:
        try:
            compiled.append(p if isinstance(p, re.Pattern) else re.compile(p, flags))
        except (re.error, TypeError) as exc:
            raise ConfigurationError(f"deny_regex pattern {p!r} is not a valid regular expression: {exc}") from None

    def check(value: Any) -> bool:
        for text in _strings(value):
            for rx in compiled:
                if rx.search(text):
                    raise GuardrailError(f"matches the denied pattern '{rx.pattern}'")
        return True

    return Guardrail(check, name=name or "deny_regex", retry=retry)


def json_schema(schema: dict[str, Any], *, parse_json: bool = True, name: str | None = None,
                retry: bool = False) -> Guardrail:
    """Block a value that does not validate against the JSON Schema ``schema``.

    With ``parse_json`` (the default) a ``str``/``bytes`` value is parsed as JSON first, as a
    model answers in text; text that is not JSON is blocked. The value passes on unchanged.
    Needs the ``jsonschema`` package (``pip install 'pyagent-kernel[jsonschema]'``); the
    schema itself is checked when the guardrail is built.
    """
    try:
        import jsonschema
        import jsonschema.validators
    except ImportError:
        raise ConfigurationError(
            "json_schema(...) needs the jsonschema package: pip install 'pyagent-kernel[jsonschema]' "
            "(or pip install jsonschema); or validate with a pydantic model class as the guardrail"
        ) from None
    if not isinstance(schema, dict):
        raise ConfigurationError(f"json_schema needs a JSON Schema as a dict, got {type(schema).__name__}")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigurationError(f"json_schema: the schema is not valid: {exc.message}") from None
    validator = cls(schema)
    title = schema.get("title")

    def check(value: Any) -> bool:
        if parse_json and isinstance(value, (str, bytes, bytearray)):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise GuardrailError(f"is not JSON: {exc}") from None
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise GuardrailError(f"does not match the schema{f' at {where}' if where else ''}: {error.message}")
        return True

    return Guardrail(check, name=name or (f"json_schema({title})" if title else "json_schema"), retry=retry)


# -- PII ------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# Neither may be a fragment of a longer run of digit groups (an id, a number that failed Luhn).
_EDGE_BEFORE = r"(?<![\d+])(?<!\d[ .-])"
_EDGE_AFTER = r"(?!\d)(?![ .-]?\d)"
# A run of digit groups joined by single spaces or dashes; a card number (13 to 19 digits) is
# looked for at its start or its end, so one followed by its expiry or security code
# ("4111 1111 1111 1111 123", "4111111111111111 12/27") is found too.
_DIGIT_RUN = re.compile(_EDGE_BEFORE + r"\d+(?:[ -]\d+)*(?!\d)(?!\.\d)")
_GROUP = re.compile(r"\d+")
_PHONE = re.compile(
    _EDGE_BEFORE + "(?:"
    # international: +country code, then digit groups (E.164 allows at most 15 digits)
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567
    r"|(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    # national with a trunk 0: 020 7946 0958, 030-12345678, 06 12 34 56 78
    r"|0\d{1,4}(?:[ .-]\d{2,8}){1,4}"
    ")" + _EDGE_AFTER
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (and most random numbers do not)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def card_span(run: str) -> tuple[int, int] | None:
    """Where a Luhn-valid card number (13-19 digits) is in a run of digit groups, or None.

    The whole run first, then shorter runs of whole groups from its start, then from its end:
    a card is written first with its expiry or code after it, or after an order number.
    """
    groups = [m.span() for m in _GROUP.finditer(run)]
    last = len(groups) - 1
    windows = [(0, j) for j in range(last, -1, -1)] + [(i, last) for i in range(1, last + 1)]
    for i, j in windows:
        start, end = groups[i][0], groups[j][1]
        digits = _digits(run[start:end])
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return start, end
    return None


def redact_pii(*, emails: bool = True, phones: bool = True, cards: bool = True,
               replacement: str = "[redacted {kind}]", name: str | None = None) -> Guardrail:
    """Replace e-mail addresses, phone numbers and payment card numbers; never blocks.

    Card numbers (13-19 digits, spaced or dashed or not) are replaced only when they pass the
    Luhn check, so an order number that happens to be 16 digits long is left alone. Phone
    numbers are recognised with a ``+`` country code (``+44 20 7946 0958``) or in grouped
    national forms (``(555) 123-4567``, ``555-123-4567``, ``020 7946 0958``); a bare run of
    digits is not taken for one. Strings inside dicts, lists, tuples, sets, pydantic models and
    dataclasses are redacted too (dict keys are not). ``replacement`` may use ``{kind}``: ``email``, ``phone`` or ``card``.
    """
    if not (emails or phones or cards):
        raise ConfigurationError("redact_pii with emails, phones and cards all False would redact nothing")
    try:
        replacement.format(kind="email")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigurationError(f"redact_pii replacement {replacement!r} may use only {{kind}}: {exc}") from None

    def redact_text(text: str, counts: dict[str, int]) -> str:
        def sub(kind: str, accept: Callable[[str], bool] | None = None) -> Callable[[re.Match[str]], str]:
            def one(m: re.Match[str]) -> str:
                if accept is not None and not accept(m.group(0)):
                    return m.group(0)
                counts[kind] = counts.get(kind, 0) + 1
                return replacement.format(kind=kind)
            return one

        if emails and "@" in text:
            text = _EMAIL.sub(sub("email"), text)
        if cards:
            def card(m: re.Match[str]) -> str:
                run = m.group(0)
                if len(run) < 13:
                    return run
                span = card_span(run)
                if span is None:
                    return run
                counts["card"] = counts.get("card", 0) + 1
                return run[:span[0]] + replacement.format(kind="card") + run[span[1]:]

            text = _DIGIT_RUN.sub(card, text)
        if phones:
            text = _PHONE.sub(sub("phone", lambda s: 7 <= len(_digits(s)) <= 15), text)
        return text

    def redact(value: Any, counts: dict[str, int]) -> Any:
        if isinstance(value, str):
            return redact_text(value, counts)
        if isinstance(value, dict):
            return {k: redact(v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return [redact(v, counts) for v in value]
        if isinstance(value, tuple):
            return tuple(redact(v, counts) for v in value)
        if isinstance(value, frozenset):
            return frozenset(redact(v, counts) for v in value)
        if isinstance(value, set):
            return {redact(v, counts) for v in value}
        fields = _fields(value)
        if fields is None:
            return value
        # A structured answer (a pydantic model, a dataclass): a copy with its text fields
        # redacted, of the same type, without validating again (a redacted e-mail field would
        # no longer be an e-mail address).
        changes = {}
        for name, old in fields:
            new = redact(old, counts)
            if new is not old:
                changes[name] = new
        if not changes:
            return value
        if isinstance(value, BaseModel):
            return value.model_copy(update=changes)
        out = copy.copy(value)
        for name, new in changes.items():
            object.__setattr__(out, name, new)
        return out

    def check(value: Any) -> Any:
        counts: dict[str, int] = {}
        out = redact(value, counts)
        if not counts:
            return True  # nothing found: the value passes as it is (no copy, no event)
        note = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(counts.items()))
        return Replace(out, note=f"redacted {note}")

    return Guardrail(check, name=name or "redact_pii")
