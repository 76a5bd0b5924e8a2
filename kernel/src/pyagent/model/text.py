"""Bounded text for values that can be huge: outputs can be megabytes, and asyncio, loggers and
pytest call ``repr()`` on whatever they hold."""

from __future__ import annotations

import reprlib
from typing import Any

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def short_repr(value: Any) -> str:
    """A bounded repr: outputs can be megabytes, and asyncio, loggers and pytest call repr()."""
    return _short.repr(value)
