"""Old module paths: the kernel's modules moved into layers; their old names still import, with a warning.

``pyagent.engine`` is now a package that re-exports what the module had, so it needs no alias.
Plugins should import from :mod:`pyagent.plugin`, users from :mod:`pyagent` and
:mod:`pyagent.orchestrator`; these aliases go away in a later release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    "pyagent.agents": "pyagent.model.agents",
    "pyagent.context": "pyagent.model.context",
    "pyagent.tasks": "pyagent.model.tasks",
    "pyagent.results": "pyagent.model.results",
    "pyagent.events": "pyagent.model.events",
    "pyagent.policies": "pyagent.model.policies",
    "pyagent.concurrency": "pyagent.engine.concurrency",
    "pyagent.resilience": "pyagent.engine.resilience",
    "pyagent.codec": "pyagent.durability.codec",
    "pyagent.store": "pyagent.durability.store",
    "pyagent.state": "pyagent.durability.state",
    "pyagent.checkpoint": "pyagent.durability.checkpoint",
    "pyagent.history": "pyagent.durability.history",
    "pyagent.metrics": "pyagent.durability.metrics",
    "pyagent.durable": "pyagent.durability.lifecycle",
}

# Names that left a moved module for another one.
_EXTRA = {
    "pyagent.durability.checkpoint": {
        "fold": "pyagent.durability.replay", "load_run": "pyagent.durability.replay",
        "next_seq": "pyagent.durability.replay", "open_store": "pyagent.durability.stores",
        "store_scheme": "pyagent.durability.stores",
    },
    "pyagent.durability.lifecycle": {
        "current_run": "pyagent.model.context", "metrics_for": "pyagent.durability.metrics",
        "resume_state": "pyagent.runner", "resume_run": "pyagent.runner",
    },
}


class _Alias(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {new}: plugins import from pyagent.plugin, applications "
            "from pyagent and pyagent.orchestrator (the old path goes away in a later release)",
            DeprecationWarning, stacklevel=_caller_depth(),
        )
        target = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(target).items() if not k.startswith("__")})
        for name, where in _EXTRA.get(new, {}).items():
            module.__dict__[name] = getattr(importlib.import_module(where), name)
        module.__doc__ = target.__doc__


def _caller_depth() -> int:
    """The stack level of the first frame outside importlib, so the warning points at the import."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias())


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
