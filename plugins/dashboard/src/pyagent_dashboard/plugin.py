"""Entry point: ``pyagent dashboard``, and the dashboard at ``/ui`` of ``pyagent serve``.

Starlette, Jinja2 and uvicorn are imported when the command runs or the orchestrator serves,
never at plugin discovery.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pyagent.plugin import hookimpl

log = logging.getLogger("pyagent.dashboard")

#: Where ``pyagent serve`` mounts the dashboard.
PATH = "/ui"


def _command() -> Any:
    from pyagent_dashboard.cli import dashboard

    return dashboard


def serving_app(orchestrator: Any, host: Any) -> Any:
    """The dashboard of a serving orchestrator: its store's runs, its schedules, and actions.

    Not read-only: it resumes failed runs through the host (as one of its runs) and cancels
    runs going on in this process. None (with the reason logged) when it cannot be served:
    no store to read runs from, or an address other than loopback without a token.
    """
    from pyagent_dashboard.app import TOKEN_ENV, create_app
    from pyagent_dashboard.cli import is_loopback

    if not host.store:
        log.info("the dashboard is not served at %s: serving has no store to read runs from "
                 "(pyagent serve --storage sqlite://runs.db)", PATH)
        return None
    token = host.web_token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host.http_host):
        log.error("the dashboard is not served at %s: --host %s would show every run to the network "
                  "without a token (pass --token, or set %s)", PATH, host.http_host, TOKEN_ENV)
        return None
    return create_app(host.store, orchestrator=orchestrator, host=host, read_only=False, token=token)


@hookimpl
def pyagent_register_commands(register: Any) -> None:
    register("dashboard", _command)


@hookimpl
def pyagent_register_web_apps(register: Any) -> None:
    register(PATH, serving_app)
