"""Reading a supervisor's plan: a list of subtasks, whether code returned it or a model wrote it.

Code supervisors return a list of strings. A language model writes text, so a JSON list (bare,
in a code fence, or inside prose), a JSON object with a ``subtasks`` list, or one subtask per
line (bulleted or numbered) are all accepted. Anything else is a ``PlanError`` that shows what
the supervisor returned.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyagent.plugin import PyAgentError


class PlanError(PyAgentError, ValueError):
    """The supervisor's plan (or review) is not a list of subtasks."""


_KEYS = ("subtasks", "tasks", "plan", "steps")
_ITEM_KEYS = ("subtask", "task", "description", "title")
_DONE = {"", "[]", "done", "none", "no", "nothing", "no more", "no more subtasks", "finished"}
# A one-line reply that says no more work is wanted ("No further subtasks are needed.").
_DONE_PHRASE = re.compile(
    r"^(?:(?:no|none|nothing)(?:\s+(?:more|further|additional|other|else))?"
    r"(?:\s+(?:sub)?tasks?|\s+work|\s+to\s+do)?(?:\s+(?:is|are))?"
    r"(?:\s+(?:needed|required|necessary|left|remaining))?"
    r"|(?:all\s+)?(?:done|finished|complete)|(?:the\s+)?(?:work|task)\s+is\s+(?:done|finished|complete))$",
    re.I)
# A bullet character needs a space after it, so "**Bold heading**" is not a bullet.
_BULLET = re.compile(r"^\s*(?:[-*•](?=\s)|\d+[.)]|\(\d+\)|(?:step|subtask|task)\s*\d+\s*[:.)-])\s*", re.I)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_STRONG = re.compile(r"(\*\*|__)(.+?)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def parse_plan(value: Any, *, supervisor: str, phase: str) -> list[str]:
    """The subtasks in ``value`` (possibly none); a ``PlanError`` naming the supervisor if unreadable."""
    items = _items(value, supervisor, phase)
    subtasks = []
    for item in items:
        if isinstance(item, dict):
            item = next((item[k] for k in _ITEM_KEYS if k in item), None)
        if not isinstance(item, str):
            raise _error(value, supervisor, phase, f"item {_show(item)} is not a string")
        text = item.strip()
        if text:
            subtasks.append(text)
    return subtasks


def _items(value: Any, supervisor: str, phase: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return _from_text(value, supervisor, phase)
    if isinstance(value, dict):
        for key in _KEYS:
            if key in value:
                return _items(value[key], supervisor, phase)
        raise _error(value, supervisor, phase, f"a dict needs a {_KEYS[0]!r} list")
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _error(value, supervisor, phase, f"{type(value).__name__} is not a list")


def _from_text(text: str, supervisor: str, phase: str) -> list[Any]:
    body = _FENCE.sub("", text.strip()).strip()
    if _says_done(body):
        return []
    for candidate in (body, body[body.find("["): body.rfind("]") + 1] if "[" in body else ""):
        if not candidate:
            continue
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, (list, dict)):
            return _items(parsed, supervisor, phase)
    lines = [line for line in body.splitlines() if line.strip()]
    marked = [line for line in lines if _BULLET.match(line)]
    if not marked:
        return [_plain(line) for line in lines]
    # The least indented bullets are the subtasks; deeper ones are details folded into the one above.
    top = min(_indent(line) for line in marked)
    subtasks: list[str] = []
    details: list[list[str]] = []
    for line in marked:
        text = _plain(_BULLET.sub("", line))
        if _indent(line) == top or not subtasks:
            subtasks.append(text)
            details.append([])
        elif text:
            details[-1].append(text)
    return [f"{s.rstrip(':')}: {'; '.join(d)}" if d else s for s, d in zip(subtasks, details, strict=True)]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _plain(line: str) -> str:
    """A plan line without markdown emphasis: ``**Research**: X`` is the subtask ``Research: X``."""
    return _EMPHASIS.sub(r"\1", _STRONG.sub(r"\2", line)).strip()


def _says_done(body: str) -> bool:
    if "\n" in body.strip():
        return False
    words = " ".join(_plain(body).split()).rstrip(".!").strip()
    return words.lower() in _DONE or bool(_DONE_PHRASE.match(words))


def _error(value: Any, supervisor: str, phase: str, why: str) -> PlanError:
    return PlanError(
        f"supervisor '{supervisor}' returned {_show(value)} in the {phase} phase, which is not a list "
        f"of subtasks ({why}): return a list of strings, e.g. ['research X', 'analyse Y'] (a model "
        "may reply with a JSON list or one subtask per line)"
    )
