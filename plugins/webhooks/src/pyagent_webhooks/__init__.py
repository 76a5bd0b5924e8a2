"""pyagent-webhooks: ``orchestrator.on_webhook("/api/trigger", workflow=ci)`` over HTTP.

Registers the ``webhook`` trigger kind. Every webhook of an orchestrator is served by one
ASGI app (:func:`webhook_app`, public so it can be mounted in FastAPI or Starlette) on one
uvicorn server while the orchestrator serves. That server is also the serving HTTP server:
the web apps other plugins register (``pyagent_register_web_apps``, the dashboard at ``/ui``)
are mounted on it, and it opens for them even when there is no webhook. Starlette and uvicorn are imported when the
first webhook is made or served, never at plugin discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.plugin import hookimpl

if TYPE_CHECKING:
    from .app import serving_lifespan, webhook_app
    from .trigger import Webhook

__all__ = ["Webhook", "serving_lifespan", "webhook_app"]


def _make(orchestrator: Any, workflow: Any, **options: Any) -> Webhook:
    from .trigger import Webhook

    return Webhook(orchestrator, workflow, **options)


async def _serve(host: Any, **kwargs: Any) -> None:
    from .server import serve_webhooks

    await serve_webhooks(host, **kwargs)


@hookimpl
def pyagent_register_triggers(register: Any) -> None:
    # http=True: this kind's server is the serving HTTP server, which mounts the web apps
    # other plugins register (the dashboard at /ui), with or without webhooks.
    register("webhook", _make, serve=_serve, http=True)


def __getattr__(name: str) -> Any:
    if name in ("webhook_app", "serving_lifespan"):
        from . import app

        return getattr(app, name)
    if name == "Webhook":
        from .trigger import Webhook

        return Webhook
    raise AttributeError(f"module 'pyagent_webhooks' has no attribute {name!r}")
