"""The dashboard's pages: each is a :class:`Page` with its navigation entry and its routes.

A page is added by giving ``create_app(pages=[...])`` one more ``Page`` (or appending to
:func:`default_pages`): its ``routes(dashboard)`` returns starlette routes, relative to the
dashboard's root, and ``available(dashboard)`` says whether it shows in the navigation (the
schedules page needs a schedule trigger kind). No other code changes: the layout,
authentication, CSRF and the live updates are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard


@dataclass(frozen=True)
class Page:
    """One page: ``name`` (its id), ``title`` (in the navigation), ``path`` (its link, from the
    dashboard's root), ``routes(dashboard)`` (its starlette routes), ``nav`` (listed in the
    navigation) and ``available(dashboard)`` (whether it is offered at all)."""

    name: str
    title: str
    path: str
    routes: Callable[[Dashboard], list[Any]]
    nav: bool = True
    available: Callable[[Dashboard], bool] | None = None

    def offered(self, dashboard: Dashboard) -> bool:
        return self.available is None or bool(self.available(dashboard))


def default_pages() -> list[Page]:
    """Runs, run detail, schedules, approvals and metrics (in navigation order)."""
    from pyagent_dashboard.pages import approvals, metrics, run, runs, schedules

    return [runs.PAGE, run.PAGE, schedules.PAGE, approvals.PAGE, metrics.PAGE]
