"""A failure's traceback as bounded text, kept with the task (and the run) that failed.

Formatted once, when something fails, never on the success path; bounded so that a deep
recursion or a long chain of exceptions cannot grow a checkpoint or a history record without
limit: the last :data:`MAX_FRAMES` frames of each exception in the chain, and at most
:data:`MAX_CHARS` characters (the end is kept: the innermost frames and the message). Trimmed
text starts with a line saying so.
"""

from __future__ import annotations

import traceback as _tb
from typing import Any

#: Frames kept per exception of a chain (the innermost ones: where it was raised).
MAX_FRAMES = 20
#: Characters kept of the whole text (its end).
MAX_CHARS = 16 * 1024


def format_traceback(exc: BaseException, *, max_frames: int = MAX_FRAMES, max_chars: int = MAX_CHARS) -> str:
    """``exc``'s traceback as ``traceback.format_exception`` writes it, trimmed to the bounds.

    Never raises: an exception that cannot be formatted (its ``__str__`` fails, ...) gives a
    line saying so.
    """
    try:
        text = "".join(_tb.format_exception(exc, limit=-max_frames))
        notes = []
        if _deeper_than(exc, max_frames):
            notes.append(f"only the last {max_frames} frames of each exception are kept")
        if len(text) > max_chars:
            tail = text[-max_chars:]
            cut = tail.find("\n")
            text = tail[cut + 1:] if 0 <= cut < len(tail) - 1 else tail
            notes.append(f"only its last {max_chars} characters are kept")
        if notes:
            text = f"[traceback trimmed: {'; '.join(notes)}]\n{text}"
        return text
    except Exception as problem:  # a broken __str__, a recursion limit: say so, never fail the run
        return f"{_name(exc)} (its traceback could not be formatted: {_name(problem)})\n"


def _deeper_than(exc: BaseException, limit: int) -> bool:
    """Whether any exception of ``exc``'s chain (causes, contexts, a group's members) has more than ``limit`` frames."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        for frames, _ in enumerate(_tb.walk_tb(e.__traceback__), 1):
            if frames > limit:
                return True
        todo.append(e.__cause__)
        if not e.__suppress_context__:
            todo.append(e.__context__)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
    return False


def _name(exc: BaseException) -> str:
    return type(exc).__qualname__


# -- saved compactly -----------------------------------------------------------------------
# A task that failed keeps its traceback, and so does the attempt that failed last: the same
# text. Saved (checkpoints, history), it is written once, on the task, and the last attempt's
# is filled in again when read back.


def stored_attempts(attempts: list[dict[str, Any]], task_traceback: str | None) -> list[dict[str, Any]]:
    """``attempts`` (``Attempt.to_dict()`` each, changed in place) as saved: no ``traceback``
    key where there is none, nor on the last attempt when it is the task's own."""
    last = len(attempts) - 1
    for i, a in enumerate(attempts):
        tb = a.get("traceback", None)
        if tb is None or (i == last and tb == task_traceback):
            a.pop("traceback", None)
    return attempts


def restore_traceback(task: dict[str, Any]) -> dict[str, Any]:
    """A saved task (a dict) with its last failed attempt's traceback filled in from the task's."""
    tb = task.get("traceback")
    attempts = task.get("attempts")
    if tb is None or not attempts or not isinstance(attempts, list):
        return task
    last = attempts[-1]
    if isinstance(last, dict) and last.get("error") is not None and last.get("traceback") is None:
        task = {**task, "attempts": [*attempts[:-1], {**last, "traceback": tb}]}
    return task
