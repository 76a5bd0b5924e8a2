"""The ``pyagent`` command line: one module per group of commands, registered on ``main``.

Errors are one line (``Error: ...``); exit code 2 means the command could not start
(configuration), 1 that what it ran failed. ``--traceback`` anywhere shows the full trace.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from pyagent.cli.errors import ConfigError, report_unexpected


class _Group(click.Group):
    """The main group: ``--traceback`` accepted anywhere, and errors turned into one line."""

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        show = "--traceback" in argv
        argv = [x for x in argv if x != "--traceback"]
        if not show:
            return super().main(argv, *a, **kw)
        kw["standalone_mode"] = False  # let the exception through with its traceback
        try:
            return super().main(argv, *a, **kw)
        except click.ClickException as exc:
            cause = exc.__cause__
            if cause is not None:
                # The trace of what went wrong, then the same exit code as without --traceback:
                # scripts tell a configuration error (2) from a failed run (1) either way.
                import traceback

                traceback.print_exception(cause)
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        return command if command is not None else plugin_command(name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *plugin_command_names()})

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # Output piped into `head` or a pager that quit: stop quietly, as Unix tools do.
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            error = report_unexpected(exc)
            raise error from exc


@click.group(cls=_Group)
@click.version_option(package_name="pyagent-kernel")
def main() -> None:
    """Orchestrate multi-agent workflows.

    Errors print one line; add --traceback anywhere to see the full Python traceback.
    Exit codes: 0 success, 1 a run failed, 2 a configuration error (nothing ran).
    """


def plugin_command_names() -> list[str]:
    """The command groups plugins add (``pyagent_register_commands``); discovers plugins."""
    from pyagent.plugins import get_runtime

    try:
        return list(get_runtime().registry("commands"))
    except Exception:  # a broken plugin set must not break `pyagent --help`
        return []


def plugin_command(name: str) -> click.Command | None:
    """A plugin's command group by name, or None; a known one that is not installed says how to get it."""
    from pyagent.errors import PluginNotInstalledError
    from pyagent.plugins import KNOWN_DISTRIBUTIONS, get_runtime, not_installed

    table = get_runtime().registry("commands")
    reg = table.get(name)
    if reg is None:
        if name in KNOWN_DISTRIBUTIONS["command"]:
            error: PluginNotInstalledError = not_installed("command", name, table)
            raise ConfigError(str(error))
        return None
    command = reg.obj if isinstance(reg.obj, click.Command) else reg.obj()
    if not isinstance(command, click.Command):
        raise ConfigError(f"plugin {reg.plugin!r} registered command {name!r} as {command!r}, which is not "
                          "a click command: register a click command or group, or a function returning one")
    return command


def _register() -> None:
    from pyagent.cli import history, people, plugins, run, runs, scaffold, serve

    for module in (plugins, run, history, runs, people, scaffold, serve):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

__all__ = ["main"]
