"""How the command line reports errors: one clean line, and an exit code that says what kind.

- ``2``: the command could not start: a bad argument, a workflow file that does not import
  (syntax error, a workflow refused when it was built), a missing plugin, a bad setting.
- ``1``: it ran and failed (a failed or cancelled run), or something unexpected broke.

``--traceback`` (anywhere on the command line) shows the full Python traceback instead.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import click

CONFIG_EXIT = 2
FAILED_EXIT = 1


class ConfigError(click.ClickException):
    """A configuration problem found before anything ran: ``Error: ...``, exit code 2."""

    exit_code = CONFIG_EXIT


class UnexpectedError(click.ClickException):
    """Something broke that no command turned into a message: exit code 1."""

    exit_code = FAILED_EXIT


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def one_line(exc: BaseException) -> str:
    """``exc`` as one readable line: pydantic's multi-line validation report folded, no traceback."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = []
        for err in exc.errors():
            msg = str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {msg}" if loc else msg)
        return f"invalid {exc.title}: " + "; ".join(problems)
    text = " ".join(str(exc).split())
    from pyagent.errors import PyAgentError

    if isinstance(exc, PyAgentError) or (isinstance(exc, ValueError) and text):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def in_user_code(exc: BaseException, path: Path) -> str | None:
    """``file:line`` of the innermost frame of ``exc``'s traceback that lies in ``path``."""
    target = str(path.resolve())
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == target:
            where = f"{path}:{frame.lineno}"
    return where


def loading_error(exc: BaseException, path: Path) -> ConfigError:
    """The error for a workflow file that fails to import, pointing at the line that failed."""
    if isinstance(exc, SyntaxError):
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        detail = f"{type(exc).__name__}: {exc.msg}"
        if exc.text and exc.text.strip():
            detail += f": {exc.text.strip()}"
        error = ConfigError(f"{where}: {detail}")
    else:
        where = in_user_code(exc, path) or str(path)
        error = ConfigError(f"{where}: {one_line(exc)}")
    error.__cause__ = exc
    return error


def report_unexpected(exc: BaseException) -> Any:
    """An error no command turned into a message: one line with a pointer to ``--traceback``."""
    from pyagent.errors import (
        ConfigurationError,
        PluginLoadError,
        PluginNotInstalledError,
        StateError,
    )

    # A plugin that fails to import under PYAGENT_STRICT_PLUGINS is an installation problem,
    # like a missing one: nothing ran.
    if isinstance(exc, (ConfigurationError, PluginLoadError, PluginNotInstalledError, StateError)):
        return ConfigError(one_line(exc))
    return UnexpectedError(f"{one_line(exc)} (run with --traceback for the full trace)")
