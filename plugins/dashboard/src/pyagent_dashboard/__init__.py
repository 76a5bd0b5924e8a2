"""pyagent-dashboard: a web UI for a store's runs and metrics, on starlette and Jinja2.

``create_app(storage=URL)`` is an ASGI application: the runs list, each run's timeline, graph,
inputs, outputs and audit trail, and metrics, updated live. With an ``Orchestrator`` and
``read_only=False`` it can also cancel runs going on in this process and resume failed ones.
``pyagent dashboard --storage URL`` serves it alone, read-only. Nothing is imported until the
app is created, so plugin discovery stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard, create_app
    from pyagent_dashboard.pages import Page

__all__ = ["Dashboard", "Page", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("Dashboard", "create_app"):
        from pyagent_dashboard import app

        return getattr(app, name)
    if name == "Page":
        from pyagent_dashboard.pages import Page

        return Page
    raise AttributeError(f"module 'pyagent_dashboard' has no attribute {name!r}")
