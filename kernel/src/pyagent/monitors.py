"""Monitors by name: the classes the specification imports, and monitors named in configuration.

``from pyagent.monitors import ConsoleMonitor, SlackMonitor, PrometheusMonitor,
OpenTelemetryMonitor`` gives the class that the installed monitor plugin registered through
``pyagent_register_monitors``, the way ``AgentPatterns`` finds its patterns; without the plugin
the import is a clear error naming what to install. The same kinds are named in configuration
(``[tool.pyagent] monitors = ["console", "prometheus"]``), where they report on every run in the
process, and in ``Orchestrator(monitors=["console"])``.

A monitor is any object with ``on_event(event)``, called synchronously on the run's event loop
for each event it wants. It may declare ``event_kinds`` (a run builds no event that no listener
wants) and ``close()`` (flush and stop; called at exit for configured monitors).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyagent.config import MonitorSpec, get_settings, monitor_specs
from pyagent.errors import ConfigurationError, PluginNotInstalledError
from pyagent.model.events import declared_kinds, sync_listener, wanted_kinds
from pyagent.plugins import (
    Runtime,
    get_runtime,
    not_installed,
    set_configured_listeners,
)

if TYPE_CHECKING:
    from pyagent.model.events import Event

    # Resolved by __getattr__ from the installed monitor plugins.
    ConsoleMonitor: Any
    SlackMonitor: Any
    PrometheusMonitor: Any
    OpenTelemetryMonitor: Any

log = logging.getLogger("pyagent.monitors")

# The class names the specification imports, and the monitor kind each one is registered as.
CLASSES: dict[str, str] = {
    "ConsoleMonitor": "console",
    "SlackMonitor": "slack",
    "PrometheusMonitor": "prometheus",
    "OpenTelemetryMonitor": "otel",
}


def __getattr__(name: str) -> Any:
    kind = CLASSES.get(name)
    if kind is None:
        raise AttributeError(f"module 'pyagent.monitors' has no attribute {name!r}")
    return monitor_class(kind, label=name)


def __dir__() -> list[str]:
    return sorted(__all__)


def monitor_class(kind: str, *, label: str | None = None, runtime: Runtime | None = None) -> Any:
    """The factory (usually the class) registered for monitor ``kind``, or an error naming the fix."""
    table = (runtime or get_runtime()).registry("monitors")
    reg = table.get(kind)
    if reg is None:
        raise _not_installed(kind, list(table), label)
    return reg.obj


def _not_installed(kind: str, installed: list[str], label: str | None) -> PluginNotInstalledError:
    error = not_installed("monitor", kind, installed)
    if label:  # name the class the user asked for: "monitor 'slack' (SlackMonitor) ..."
        error.args = (str(error).replace(f"monitor '{kind}'", f"monitor '{kind}' ({label})", 1),)
    return error


def create(spec: str | MonitorSpec | dict[str, Any], *, source: str | None = None,
           runtime: Runtime | None = None, **options: Any) -> Any:
    """A monitor built from its name and options: ``create("prometheus", port=9464)``.

    ``spec`` is a name, a ``MonitorSpec``, or a table ``{"name": "prometheus", "port": 9464}``.
    An unknown option or a bad value is a ConfigurationError naming the monitor, the option
    and where it was written (``source``).
    """
    (parsed,) = monitor_specs([spec])
    kind, given = parsed.name, {**parsed.options, **options}
    factory = monitor_class(kind, runtime=runtime)
    where = f" (from {source})" if source else ""
    _check_options(kind, factory, given, where)
    try:
        return factory(**given)
    except ConfigurationError as exc:
        if source and source not in str(exc):
            exc.args = (f"{exc}{where}",)
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"monitor '{kind}'{where}: {exc}") from exc


def _check_options(kind: str, factory: Any, given: dict[str, Any], where: str) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C factory: let it check its own arguments
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items()
             if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name in given:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigurationError(
                f"monitor '{kind}'{where} has no option '{name}': {hint}"
                f"its options are {', '.join(valid) or 'none'}"
            )


def listener_of(monitor: Any) -> Callable[[Event], Any]:
    """The function a run calls with each event: ``monitor.on_event``, or the monitor if callable."""
    on_event = getattr(monitor, "on_event", None)
    listener = on_event if callable(on_event) else monitor if callable(monitor) else None
    if listener is not None:
        try:
            declared_kinds(listener)
        except Exception as exc:
            raise ConfigurationError(
                f"monitor {monitor!r}: its event_kinds cannot be read ({type(exc).__name__}: {exc}): "
                "give the event kinds it wants, e.g. event_kinds = {'workflow.failed'}, or leave it "
                "out to get every event"
            ) from None
        return sync_listener(listener, "monitor")
    raise ConfigurationError(
        f"monitor {monitor!r} has no on_event(event) method and is not callable: "
        "pass a monitor object (ConsoleMonitor(), ...), a monitor name ('console') "
        "or a function taking one event"
    )


def resolve(monitor: Any, *, source: str | None = None) -> Any:
    """A monitor object: names and tables are built with :func:`create`, objects pass through."""
    if isinstance(monitor, (str, dict, MonitorSpec)):
        return create(monitor, source=source)
    return monitor


# -- monitors named in the settings --------------------------------------------------------


def configured(runtime: Runtime | None = None) -> list[Any]:
    """The monitors named in the settings, built once per runtime (again if the settings change)."""
    rt = runtime or get_runtime()
    specs = get_settings().monitors
    cached = rt.configured_monitors
    if cached is not None and cached[0] == specs:
        return [monitor for monitor, _ in cached[1]]
    return [monitor for monitor, _ in _build(rt, specs)]


def configured_listeners(runtime: Runtime) -> list[Callable[[Event], Any]]:
    """What every run delivers to for the configured monitors (nothing when none is configured)."""
    specs = get_settings().monitors
    cached = runtime.configured_monitors
    if cached is not None and cached[0] == specs:
        return [listener for _, listener in cached[1]]
    if not specs and cached is None:
        return []
    return [listener for _, listener in _build(runtime, specs)]


set_configured_listeners(configured_listeners)  # team events outside any run reach them too
_build_lock = threading.Lock()


def _build(runtime: Runtime, specs: list[MonitorSpec]) -> list[tuple[Any, Callable[[Event], Any]]]:
    with _build_lock:
        cached = runtime.configured_monitors
        if cached is not None and cached[0] == specs:
            return list(cached[1])
        source = get_settings().source
        where = "the monitors setting" + ("" if source == "defaults" else f" in {source}")
        built = []
        for spec in specs:
            monitor = create(spec, source=where, runtime=runtime)
            built.append((monitor, _process_wide(listener_of(monitor))))
        if cached is not None:
            close_all(m for m, _ in cached[1])
        runtime.configured_monitors = (list(specs), built)
        if built:
            _close_at_exit(runtime)
        return built


def _process_wide(on_event: Callable[[Event], Any]) -> Callable[[Event], Any]:
    # Every run (a sub-workflow's too) delivers to a configured monitor itself, so a parent run
    # must not forward to it again: the flag says so, as it does for the plugin hooks.
    def listener(event: Event) -> Any:
        return on_event(event)

    listener.event_kinds = wanted_kinds(on_event)  # type: ignore[attr-defined]
    listener.process_wide = True  # type: ignore[attr-defined]
    listener.__qualname__ = getattr(on_event, "__qualname__", "monitor")
    return listener


def close_all(monitors: Iterable[Any]) -> None:
    """Close monitors that have ``close()`` (flush queued notifications, stop servers); never raises."""
    for monitor in monitors:
        close = getattr(monitor, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception as exc:
            log.warning("monitor %r failed to close: %s", monitor, exc)


_exit_registered: set[int] = set()


def _close_at_exit(runtime: Runtime) -> None:
    if id(runtime) in _exit_registered:
        return
    _exit_registered.add(id(runtime))
    import atexit
    import weakref

    ref = weakref.ref(runtime)

    def close() -> None:
        rt = ref()
        if rt is not None and rt.configured_monitors is not None:
            close_all(m for m, _ in rt.configured_monitors[1])

    atexit.register(close)


__all__ = [
    "CLASSES",
    "ConsoleMonitor",
    "MonitorSpec",
    "OpenTelemetryMonitor",
    "PrometheusMonitor",
    "SlackMonitor",
    "close_all",
    "configured",
    "configured_listeners",
    "create",
    "listener_of",
    "monitor_class",
    "resolve",
]
