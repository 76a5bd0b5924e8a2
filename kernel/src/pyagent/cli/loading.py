"""Loading user code for the command line: a Python file, and the workflow in it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from pyagent.cli.errors import ConfigError, loading_error


def load_module(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"pyagent_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file: its own error, pointed at its line
        raise loading_error(exc, path) from exc
    finally:
        sys.path.pop(0)
    return module


def find_workflow(module: Any, wanted: str | None, path: Path) -> Any:
    from pyagent.workflow import Workflow

    found = {name: v for name, v in vars(module).items() if isinstance(v, Workflow)}
    if wanted is not None:
        if wanted in found:
            return found[wanted]
        for wf in found.values():
            if wf.name == wanted:
                return wf
        have = ", ".join(f"{k} ({v.name!r})" for k, v in found.items()) or "none"
        raise ConfigError(f"{path} has no workflow {wanted!r} (workflows: {have})")
    if len(found) == 1:
        return next(iter(found.values()))
    # Several: run the one no other workflow uses as a step (the top of a composition).
    used = {id(getattr(t.agent, "workflow", None)) for wf in found.values() for t in tasks_of(wf)}
    roots = [wf for wf in found.values() if id(wf) not in used]
    if len(roots) == 1:
        return roots[0]
    if not found:
        raise ConfigError(f"{path} defines no Workflow at module level")
    names = ", ".join(found)
    raise ConfigError(f"{path} defines several workflows ({names}): pick one with {path}:NAME")


def tasks_of(workflow: Any) -> list[Any]:
    from pyagent.model.tasks import ConditionalTask

    out: list[Any] = []
    for step in workflow.steps:
        out.extend(step.branches if isinstance(step, ConditionalTask) else [step])
    return out


