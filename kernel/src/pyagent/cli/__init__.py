"""The ``pyagent`` command line: one module per group of commands, registered on ``main``."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="pyagent-kernel")
def main() -> None:
    """Orchestrate multi-agent workflows."""


def _register() -> None:
    from pyagent.cli import history, plugins, run, serve

    for module in (plugins, run, history, serve):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

__all__ = ["main"]
