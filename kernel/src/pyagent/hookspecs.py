"""Every pluggy hook a pyagent plugin can implement, grouped by kind.

A plugin is a module or object with functions marked ``@hookimpl`` named after these specs,
published under the ``pyagent`` entry-point group. Registration hooks are broadcasts: the
kernel calls each plugin's implementation once, at discovery, with a ``register`` callable.
Observation hooks (monitors) are broadcasts whose exceptions are caught and reported; they
never fail a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pyagent.model.events import Event

hookspec = pluggy.HookspecMarker("pyagent")
hookimpl = pluggy.HookimplMarker("pyagent")

Register = Callable[..., None]

# ---------------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_executors(register: Register) -> None:
    """Register executors by name: ``register("dask", factory)``.

    ``factory(**options)`` returns an object with ``async call(agent, input, ctx)``, plus
    optional ``async start()`` (awaited before every run that uses it; cheap once started),
    ``async close()`` (by ``Orchestrator.aclose()`` and at exit), ``inline = True`` (agents
    run on the caller's loop) and ``supports_resources = True`` (it honours
    ``ctx.task.resources``; tasks with resources are refused on executors without it). Called
    once per plugin at discovery (broadcast). Executors published under the
    ``pyagent.executors`` entry-point group are found too; a hook registration wins over an
    entry point of the same name.
    """


# ---------------------------------------------------------------------------------------------
# patterns
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_patterns(register: Register) -> None:
    """Register execution patterns: ``register("sequential", pattern)``.

    A workflow pattern has ``async execute(run) -> output`` and optionally
    ``validate(workflow)``, called when a run starts, before any agent. A team pattern
    (supervisor, consensus, ...) has ``build(**options)`` returning an object with
    ``async run(input)``. Called once per plugin at discovery (broadcast).
    """


# ---------------------------------------------------------------------------------------------
# routers
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_routers(register: Register) -> None:
    """Register routers: ``register("keyword", router, default=True)``.

    A router has ``score(query, agents) -> list[tuple[str, float]]`` (agent name, score in
    0..1, best first; a plain or an async method, so embedding and LLM routers can await), and
    may have ``similarity(a, b) -> float`` for consensus equivalence.
    Called once per plugin at discovery (broadcast).
    """


# ---------------------------------------------------------------------------------------------
# stores
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_stores(register: Register) -> None:
    """Register stores by URL scheme: ``register("sqlite", factory)``.

    ``factory(url)`` returns a store (see ``pyagent.store.Store``). Called once per plugin at
    discovery (broadcast); stores under the ``pyagent.stores`` entry-point group are found too.
    """


# ---------------------------------------------------------------------------------------------
# monitors
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_monitors(register: Register) -> None:
    """Register monitor kinds by name: ``register("prometheus", PrometheusMonitor)``.

    ``factory(**options)`` returns a monitor: an object with ``on_event(event)``, optionally
    ``event_kinds`` (the event kinds it wants; the others are never built for it) and
    ``close()``. Named in configuration (``[tool.pyagent] monitors = ["prometheus"]``), in
    ``Orchestrator(monitors=["console"])`` and by class in :mod:`pyagent.monitors`. Called once
    per plugin at discovery (broadcast).
    """


@hookspec
def pyagent_on_event(event: Event) -> None:
    """Observe one event (a task or workflow transition, a retry, a handoff).

    Called for every event of every run in the process (broadcast), synchronously on the run's
    event loop: hand slow work (HTTP calls) to a thread or queue. An exception is logged and
    counted, never propagated into the run.
    """


# ---------------------------------------------------------------------------------------------
# triggers
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_triggers(register: Register) -> None:
    """Register trigger kinds: ``register("cron", factory)`` (optionally ``serve=shared``).

    ``factory(orchestrator, workflow, **options)`` returns a trigger. While the orchestrator
    serves, its ``async serve(host)`` (if it has one) runs until cancelled, starting runs
    with ``await host.submit(workflow, input, trigger=..., source=...)`` (``host`` is a
    ``pyagent.plugin.TriggerHost``). A kind whose triggers share one server (webhooks: one
    HTTP port) registers ``serve=shared`` instead: ``async shared(host, *, task_status)`` runs
    once per serving orchestrator, calls ``task_status.started()`` once listening, and finds
    its triggers with ``host.triggers(kind)``. A kind registered with ``http=True`` as well
    is the serving HTTP server: it mounts ``host.web_apps`` (see
    :func:`pyagent_register_web_apps`), and is started for them even when the orchestrator
    has no trigger of its kind. A trigger with ``events`` (names) and
    ``accepts(event) -> bool`` receives ``orchestrator.emit`` of those names. Called once
    per plugin at discovery (broadcast).
    """


@hookspec
def pyagent_register_web_apps(register: Register) -> None:
    """Register web apps served with the triggers: ``register("/ui", factory)``.

    While an orchestrator serves with an HTTP port (``pyagent serve``,
    ``orchestrator.serve()``), ``factory(orchestrator, host)`` is called once and returns an
    ASGI app, or None to serve nothing (say why in the log). The host runs the app's ASGI
    lifespan (startup before anything is served, shutdown after the runs in flight have
    drained), and the HTTP server (a trigger kind registered with ``http=True``: webhooks)
    mounts it under the path on its host and port, opening them even with no webhooks.
    ``host.web_token``, when set, is the token the app should ask of every request. An app
    that fails to build or start is logged and left out; the triggers are served anyway.
    Called once per plugin at discovery (broadcast).
    """


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_models(register: Register) -> None:
    """Register language-model providers: ``register("openai", factory)``.

    ``factory(model_id, **options)`` returns a model for a model string ``"openai:gpt-4o-mini"``
    (provider before the colon); for a configured endpoint (``[tool.pyagent.models.NAME]``) the
    options are ``endpoint=NAME`` and ``config=<its table>``. A model has ``name`` and
    ``async respond(request: ModelRequest) -> ModelResponse`` (messages, tools and an output
    schema in; text, tool calls and usage out), or only ``async complete(messages) -> str``.
    Called once per plugin at discovery (broadcast).
    """


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


@hookspec
def pyagent_register_commands(register: Register) -> None:
    """Register command groups of the ``pyagent`` command line: ``register("mcp", mcp_group)``.

    The object is a click command or group, or a function of no arguments that returns one,
    so the plugin imports its command-line code only when the command is used. The kernel's
    own commands keep their names. Called once per plugin at discovery (broadcast); the
    command line looks plugin commands up only when it is asked for one it does not have.
    """


HOOK_KINDS: dict[str, str] = {
    "pyagent_register_executors": "executors",
    "pyagent_register_patterns": "patterns",
    "pyagent_register_routers": "routers",
    "pyagent_register_stores": "stores",
    "pyagent_register_monitors": "monitors",
    "pyagent_on_event": "monitors",
    "pyagent_register_triggers": "triggers",
    "pyagent_register_web_apps": "web_apps",
    "pyagent_register_models": "models",
    "pyagent_register_commands": "commands",
}


