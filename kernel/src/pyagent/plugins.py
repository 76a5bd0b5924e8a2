"""Plugin discovery, blocking, the load-failure report, and named lookups.

Discovery is lazy: nothing is scanned until something needs a plugin, so ``import pyagent``
stays fast. Entry points in the ``pyagent`` group are loaded one at a time; a plugin that
fails to import is recorded with its error and the others still load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pyagent import hookspecs
from pyagent.errors import DriverLoadFailure, PluginLoadError, PluginNotInstalledError

log = logging.getLogger("pyagent.plugins")

ENTRY_POINT_GROUP = "pyagent"
DRIVER_GROUPS = {"stores": "pyagent.stores", "executors": "pyagent.executors"}

# Which of this project's distributions provides a well-known name, for install hints. Only
# distributions that exist under plugins/ are listed (a meta-test checks it): a hint never
# names a package that does not exist.
KNOWN_DISTRIBUTIONS: dict[str, dict[str, str]] = {
    "pattern": {
        "sequential": "pyagent-sequential",
        "parallel": "pyagent-parallel",
        "graph": "pyagent-graph",
        "supervisor": "pyagent-supervisor",
        "consensus": "pyagent-consensus",
        "debate": "pyagent-debate",
        "chain_of_thought": "pyagent-reasoning",
        "handoff_team": "pyagent-handoffs",
        "handoff_chain": "pyagent-handoffs",
    },
    "router": {"keyword": "pyagent-keyword-router", "embedding": "pyagent-embedding-router",
               "llm": "pyagent-llm-router"},
    "store": {"sqlite": "pyagent-sql", "postgresql": "pyagent-sql", "postgres": "pyagent-sql"},
    "executor": {"dask": "pyagent-dask"},
    "trigger": {"cron": "pyagent-cron", "webhook": "pyagent-webhooks"},
    "model": {"openai": "pyagent-openai"},
    "monitor": {"console": "pyagent-console", "slack": "pyagent-slack",
                "prometheus": "pyagent-prometheus", "otel": "pyagent-otel"},
    "command": {"mcp": "pyagent-mcp", "a2a": "pyagent-a2a", "dashboard": "pyagent-dashboard"},
}


def not_installed(kind: str, name: str, available: Iterable[str]) -> PluginNotInstalledError:
    """The error for a ``kind`` named ``name`` that no loaded plugin provides.

    It names the distribution to install when this project has one for ``name``; otherwise a
    close match among installed and known names is offered as a likely misspelling.
    """
    import difflib

    known = KNOWN_DISTRIBUTIONS.get(kind, {})
    have = sorted(set(available))
    distribution = known.get(name)
    suggestion = None
    if distribution is None:
        candidates = [*have, *(n for n in known if n not in have)]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
        if not close:  # case and separators: "Sequential", "chain-of-thought"
            folded = {c.lower().replace("-", "_"): c for c in candidates}
            hit = folded.get(name.lower().replace("-", "_").replace(" ", "_"))
            close = [hit] if hit else []
        suggestion = close[0] if close else None
    return PluginNotInstalledError(
        kind, name, distribution, have, suggestion=suggestion,
        suggestion_distribution=known.get(suggestion) if suggestion else None,
    )


@dataclass
class PluginInfo:
    """One loaded plugin and what it contributed."""

    name: str
    distribution: str | None = None
    version: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PluginFailure:
    """A plugin that could not be loaded or failed while registering."""

    name: str
    distribution: str | None
    error: str


@dataclass
class Registration:
    name: str
    obj: Any
    plugin: str
    options: dict[str, Any] = field(default_factory=dict)


class Runtime:
    """The process-wide plugin manager with its registries.

    Registries are rebuilt whenever a plugin is registered or unregistered.
    """

    def __init__(self, *, discover: bool = True) -> None:
        self.pm = pluggy.PluginManager("pyagent")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.monitor_errors = 0
        self._discover = discover
        self._discovered = False
        self._registries: dict[str, dict[str, Registration]] | None = None
        self._lock = threading.RLock()
        self._drivers: dict[tuple[str, str], Any] = {}
        self._open_executors: dict[tuple[str, str], Any] = {}  # executors with a close(), by key
        self._models: dict[str, Any] = {}
        self._fresh_namespaces: set[str] = set()
        # Monitors named in the settings, built once: (their specs, the monitor objects).
        self.configured_monitors: tuple[Any, list[Any]] | None = None
        from pyagent.clock import Clock

        self.clock = Clock()

    # -- discovery -----------------------------------------------------------------------

    def ensure_loaded(self) -> None:
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            if self._discover:
                try:
                    self._load_entry_points()
                except BaseException:
                    # Strict mode (or an interrupt): discover again next time rather than run on
                    # with whatever loaded before the failure.
                    self._discovered = False
                    raise

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        from pyagent.config import get_settings

        settings = get_settings()  # keyword arguments given to configure() count too
        blocked = set(settings.disable_plugins)
        strict = settings.strict_plugins
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in blocked or (dist is not None and dist in blocked):
                log.info("plugin %s blocked by PYAGENT_DISABLE_PLUGINS", ep.name)
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
                if not _hook_names(obj):
                    raise PluginLoadError(
                        f"entry point {ep.name!r} ({ep.value}) is an object of type {type(obj).__name__} "
                        "with no pyagent hook implementations: point it at the plugin module (or an instance) whose "
                        "functions are marked @pyagent.hookimpl"
                    )
                self.register(obj, ep.name, distribution=dist,
                              version=ep.dist.version if ep.dist is not None else None)
            # SystemExit too: a plugin that calls sys.exit() on import is broken, not a reason to stop.
            except (Exception, SystemExit) as exc:
                failure = PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}")
                if failure not in self.failures:
                    self.failures.append(failure)
                    log.warning("pyagent plugin %r (%s) failed to load: %s", ep.name, dist, exc)
                if strict:
                    raise PluginLoadError(f'Error importing plugin "{ep.name}": {exc}') from exc

    # -- registration --------------------------------------------------------------------

    def register(
        self,
        plugin: Any,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register a plugin object or module; returns its name. Used for entry points and tests alike."""
        with self._lock:
            name = name or self.pm.get_canonical_name(plugin)
            try:
                registered = self.pm.register(plugin, name=name)
            except Exception:
                # pluggy leaves the hooks it accepted before the bad one registered: undo them,
                # so a refused plugin contributes nothing.
                if self.pm.get_plugin(name) is plugin:
                    self.pm.unregister(plugin, name)
                raise
            if registered is None:
                raise PluginLoadError(f"plugin {name!r} is blocked or already registered")
            problem = _hook_problem(self.pm, plugin)
            if problem is not None:
                self.pm.unregister(plugin, registered)
                raise PluginLoadError(f"plugin {registered!r}: {problem}")
            self.plugins[registered] = PluginInfo(registered, distribution, version)
            self._registries = None
            self._models.clear()
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.plugins.pop(name, None)
            self._registries = None
            self._drivers.clear()
            self._models.clear()

    # -- registries ----------------------------------------------------------------------

    def registry(self, kind: str) -> dict[str, Registration]:
        """Names registered through ``pyagent_register_<kind>`` hooks (kind: patterns, routers, ...)."""
        self.ensure_loaded()
        regs = self._registries
        if regs is None:
            regs = self._build_registries()
        return regs.get(kind, {})

    def _build_registries(self) -> dict[str, dict[str, Registration]]:
        with self._lock:
            regs: dict[str, dict[str, Registration]] = {}
            for info in self.plugins.values():
                info.provides = {}
            for hook_name, kind in hookspecs.HOOK_KINDS.items():
                if not hook_name.startswith("pyagent_register_"):
                    continue
                table = regs.setdefault(kind, {})
                hook = getattr(self.pm.hook, hook_name)
                # Oldest first, so a later (user/test) registration of the same name wins.
                for impl in hook.get_hookimpls():
                    plugin_name = impl.plugin_name
                    offered: list[Registration] = []

                    def register(name: str, obj: Any, _p: str = plugin_name,
                                 _o: list[Registration] = offered, **options: Any) -> None:
                        _o.append(Registration(name, obj, _p, options))

                    try:
                        impl.function(register=register)
                    except Exception as exc:
                        # All or nothing: what the hook registered before it raised is dropped.
                        failed = self.plugins.get(plugin_name)
                        failure = PluginFailure(plugin_name, failed.distribution if failed else None,
                                                f"{hook_name} raised {type(exc).__name__}: {exc}")
                        if failure not in self.failures:  # registries are rebuilt; report once
                            self.failures.append(failure)
                            log.warning("pyagent plugin %r failed in %s: %s", plugin_name, hook_name, exc)
                        continue
                    owner = self.plugins.get(plugin_name)
                    for reg in offered:
                        table[reg.name] = reg
                        if owner is not None:
                            owner.provides.setdefault(kind, []).append(reg.name)
            self._registries = regs
            return regs

    def lookup(self, kind: str, name: str) -> Any:
        """The object registered as ``name`` in ``kind``, or a PluginNotInstalledError naming the fix."""
        table = self.registry(kind + "s")
        reg = table.get(name)
        if reg is None:
            raise not_installed(kind, name, table)
        return reg.obj

    # -- drivers (stores, executors) -----------------------------------------------------

    def driver(self, kind: str, name: str) -> Any:
        """The factory for a store or executor named ``name``: hook registrations first, then entry points."""
        key = (kind, name)
        cached = self._drivers.get(key)
        if cached is not None:
            return cached
        reg = self.registry(kind).get(name)
        factory = reg.obj if reg is not None else self._load_driver_entry_point(kind, name)
        self._drivers[key] = factory
        return factory

    def _load_driver_entry_point(self, kind: str, name: str) -> Any:
        from stevedore import driver as sd_driver
        from stevedore.exception import NoMatches

        singular = kind.rstrip("s")
        namespace = DRIVER_GROUPS[kind]
        if namespace not in self._fresh_namespaces:
            # stevedore memoises entry points per namespace for the whole process; a new
            # runtime must see what is installed now.
            from stevedore.extension import ExtensionManager

            ExtensionManager.ENTRY_POINT_CACHE.pop(namespace, None)
            self._fresh_namespaces.add(namespace)
        try:
            manager = sd_driver.DriverManager(
                namespace=namespace, name=name, invoke_on_load=False,
                on_load_failure_callback=_raise_load_failure,
            )
        except NoMatches:
            available = set(self.registry(kind)) | set(self.driver_names(kind))
            raise not_installed(singular, name, available) from None
        except DriverLoadFailure:
            raise
        except Exception as exc:  # pragma: no cover - stevedore wraps most errors itself
            raise DriverLoadFailure(f"{singular} '{name}' could not be loaded: {exc}") from exc
        return manager.driver

    def driver_names(self, kind: str) -> list[str]:
        from importlib.metadata import entry_points

        return sorted({ep.name for ep in entry_points(group=DRIVER_GROUPS[kind])})

    # -- models, routers -----------------------------------------------------------------

    def resolve_model(self, model: Any, *, agent_name: str) -> Any:
        """Turn ``model=`` of an instruction agent into a model object, or explain what to install.

        ``"provider:model-id"`` asks the provider registered under that name; a name that is a
        configured endpoint (``[tool.pyagent.models.local]``) asks that endpoint's provider
        (its ``provider`` key, default ``openai``) with ``endpoint=`` and ``config=``. Models are
        shared per model string, so agents using the same model share its limits.
        """
        if model is not None and not isinstance(model, str):
            return model
        from pyagent.config import get_settings

        settings = get_settings()
        spec = model or settings.model
        providers = self.registry("models")
        if not spec:
            if len(providers) == 1:
                (only,) = providers.values()
                return only.obj(None)
            raise _no_model(agent_name, providers)
        provider, _, model_id = spec.partition(":")
        endpoint = settings.models.get(provider)
        key = f"{spec}|{sorted(endpoint.items()) if endpoint else ''}"
        cached = self._models.get(key)
        if cached is not None and cached[0] is settings:  # settings read again: build the model again
            return cached[1]
        options: dict[str, Any] = {}
        reg = providers.get(provider)
        if endpoint is not None:
            kind = str(endpoint.get("provider", "openai"))
            reg = providers.get(kind)
            options = {"endpoint": provider, "config": dict(endpoint)}
            provider = kind
        if reg is None:
            if not providers:
                raise _no_model(agent_name, providers, spec)
            raise _unknown_provider(spec, provider, model_id, providers)
        obj = reg.obj(model_id or None, **options)
        self._models[key] = (settings, obj)
        return obj

    def default_router_name(self) -> str | None:
        from pyagent.config import get_settings

        routers = self.registry("routers")
        configured = get_settings().router
        if configured:
            return configured
        for name, reg in routers.items():
            if reg.options.get("default"):
                return name
        return next(iter(routers), None)

    # -- monitors ------------------------------------------------------------------------

    def monitor_hooks(self) -> list[Callable[..., Any]]:
        """The event hook implementations, to be called one by one so one failure never stops another."""
        self.ensure_loaded()
        return [impl.function for impl in self.pm.hook.pyagent_on_event.get_hookimpls()]

    def monitor_hooks_as_listeners(self) -> list[Callable[[Any], Any]]:
        """Each event hook wrapped as a one-argument listener."""
        return [_as_listener(fn) for fn in self.monitor_hooks()]

    def broadcast(self, event: Any, extra: Iterable[Callable[[Any], Any]] = ()) -> None:
        """Deliver an event from outside a task's own transitions (team patterns, handoffs) to every monitor.

        Called from inside a workflow run (a team pattern running as a task's agent), the run
        delivers it: its listeners are the process-wide monitors plus the run's own (an
        orchestrator's monitors, ``on_event``), so they all see the team's rounds.
        """
        run = _caller_run()
        if run is not None:
            run.deliver(event)
            listeners = list(extra)
        else:
            listeners = [*self.monitor_hooks_as_listeners(), *_configured_listeners(self), *extra]
        for listener in listeners:
            try:
                listener(event)
            except Exception as exc:
                self.monitor_errors += 1
                log.warning("monitor %r failed on %s: %s", listener, getattr(event, "kind", event), exc)

    def executor(self, name: str, options: dict[str, Any] | None = None) -> Any:
        """An executor instance by name, shared per (name, options); closed by
        :meth:`close_executors` (``Orchestrator.aclose()``) or at exit."""
        key = ("executor-instance", name + repr(sorted((options or {}).items())))
        inst = self._drivers.get(key)
        if inst is None:
            with self._lock:
                inst = self._drivers.get(key)
                if inst is not None:
                    return inst
                factory = self.driver("executors", name)
                try:
                    inst = factory(**(options or {}))
                except Exception as exc:
                    raise DriverLoadFailure(f"executor '{name}' could not be created: {exc}") from exc
                self._drivers[key] = inst
                if callable(getattr(inst, "close", None)):
                    if not self._open_executors:
                        _close_at_exit(self)
                    self._open_executors[key] = inst
        return inst

    async def close_executors(self, specs: Iterable[tuple[str, dict[str, Any]]] | None = None) -> None:
        """Close the executors this runtime created (those of ``specs``, (name, options) pairs,
        or all of them) and forget them: a later run creates a new one. A failing close is
        logged; the others are still closed."""
        with self._lock:
            if specs is None:
                keys = list(self._open_executors)
            else:
                keys = [("executor-instance", name + repr(sorted(options.items()))) for name, options in specs]
            closing = [(key, self._open_executors.pop(key)) for key in keys if key in self._open_executors]
            for key, _ in closing:
                self._drivers.pop(key, None)
        for key, inst in closing:
            try:
                out = inst.close()
                if hasattr(out, "__await__"):
                    await out
            except Exception as exc:
                log.warning("executor %s failed to close: %s", key[1], exc)

    def iter_plugins(self) -> Iterator[PluginInfo]:
        self.registry("patterns")  # builds "provides"
        yield from self.plugins.values()


def _close_at_exit(runtime: Runtime) -> None:
    """Close ``runtime``'s executors left open when the process exits (a local Dask cluster's
    worker processes must not outlive it). Held weakly: a runtime dropped earlier is skipped."""
    import atexit
    import weakref

    ref = weakref.ref(runtime)

    def close_left_open() -> None:
        rt = ref()
        if rt is None or not rt._open_executors:
            return
        import asyncio

        try:
            asyncio.run(rt.close_executors())
        except Exception as exc:  # pragma: no cover - exit is best effort
            log.warning("closing executors at exit failed: %s", exc)

    atexit.register(close_left_open)


def _no_run() -> Any:
    return None


# The workflow run the calling code is part of, or None. The engine installs its own lookup
# (``engine.run.current_run``) when it is imported: this layer must not import the engine.
_caller_run: Callable[[], Any] = _no_run


def set_run_lookup(lookup: Callable[[], Any]) -> None:
    """Install the function that tells which workflow run the calling code belongs to."""
    global _caller_run
    _caller_run = lookup


def _no_listeners(runtime: Runtime) -> list[Callable[[Any], Any]]:
    return []


# The monitors named in the settings, as listeners; installed by ``pyagent.monitors``.
_configured_listeners: Callable[[Runtime], list[Callable[[Any], Any]]] = _no_listeners


def set_configured_listeners(lookup: Callable[[Runtime], list[Callable[[Any], Any]]]) -> None:
    """Install the function that gives the configured monitors' listeners of a runtime."""
    global _configured_listeners
    _configured_listeners = lookup


def _hook_names(plugin: Any) -> list[str]:
    """Names of the ``pyagent`` hook implementations ``plugin`` carries (marked with @hookimpl)."""
    marker = f"{hookspecs.hookimpl.project_name}_impl"
    names = []
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:
            continue
        if getattr(value, marker, None) is not None:
            names.append(attr)
    return names


def _hook_problem(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """Why a registered plugin cannot work as written, or None: an unknown hook name, an async monitor."""
    import difflib
    import inspect

    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, list(hookspecs.HOOK_KINDS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return (f"unknown hook {caller.name}: {hint}the hooks are listed in "
                    "pyagent.hookspecs (and docs/hooks.md)")
        if caller.name == "pyagent_on_event":
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and inspect.iscoroutinefunction(impl.function):
                    return ("pyagent_on_event is a coroutine function, but events are delivered by a "
                            "plain call on the run's event loop, so it would never run: make it a "
                            "plain function and hand slow work to a thread or a queue")
    return None


def _as_listener(fn: Callable[..., Any]) -> Callable[[Any], Any]:
    def listener(event: Any) -> Any:
        return fn(event=event)

    listener.__qualname__ = getattr(fn, "__qualname__", "monitor")
    # Process-wide: a sub-workflow's run delivers to it already, so a parent never forwards to it.
    listener.process_wide = True  # type: ignore[attr-defined]
    return listener


def _raise_load_failure(manager: Any, entrypoint: Any, exc: BaseException) -> None:
    raise DriverLoadFailure(
        f"driver '{entrypoint.name}' ({entrypoint.value}) failed to load: {type(exc).__name__}: {exc}"
    ) from exc


def _unknown_provider(spec: str, provider: str, model_id: str, providers: dict[str, Registration]) -> Exception:
    """A model string whose provider is neither installed nor a configured endpoint: say how to fix it."""
    error = not_installed("model", provider, providers)
    if error.distribution is None and error.suggestion is None:
        if not model_id:  # "gpt-4o-mini", as the OpenAI SDK writes it
            hint = f"write it as 'provider:model', e.g. '{next(iter(providers))}:{spec}'"
        else:
            hint = (f"if '{provider}' is a server of your own, configure it as an endpoint: "
                    f"[tool.pyagent.models.{provider}] base_url = \"http://127.0.0.1:8000/v1\" in pyproject.toml "
                    f"(or [models.{provider}] in pyagent.toml)")
        error.args = (f"{error}; {hint}",)
    return error


def _no_model(agent_name: str, providers: dict[str, Registration], spec: str | None = None) -> Exception:
    from pyagent.errors import ModelNotConfiguredError, install_hint

    have = ", ".join(sorted(providers)) or "none installed"
    asked = f" (asked for {spec!r})" if spec else ""
    known = KNOWN_DISTRIBUTIONS["model"]
    if known:
        provider, dist = next(iter(known.items()))
        fix = f"{install_hint(dist)} and pass model='{provider}:<model>' or set PYAGENT_MODEL"
    else:
        fix = ("install a model plugin and pass model='<provider>:<model>' or set PYAGENT_MODEL")
    return ModelNotConfiguredError(
        f"agent '{agent_name}' needs a language model{asked} but none is configured "
        f"(model providers: {have}): {fix}; for offline runs pass "
        "model=pyagent.testing.ScriptedModel([...])"
    )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, created (not yet discovered) on first use."""
    global _runtime
    rt = _runtime
    if rt is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime()
            rt = _runtime
    return rt


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Replace the process-wide runtime (tests); returns the previous one."""
    global _runtime
    previous, _runtime = _runtime, runtime
    return previous


def register(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object or module in the process-wide runtime."""
    return get_runtime().register(plugin, name)


def unregister(name: str) -> None:
    """Unregister a plugin by name from the process-wide runtime."""
    get_runtime().unregister(name)
