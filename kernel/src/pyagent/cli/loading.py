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
    _send_by_value(module)
    return module


def _send_by_value(module: Any) -> None:
    """A file loaded by its path is importable nowhere else under its module name: executors
    that send agents to other processes with cloudpickle (Dask) send its functions and classes
    by value, not by a reference the workers could not resolve."""
    try:
        import cloudpickle  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:  # no executor here pickles with it
        return
    cloudpickle.register_pickle_by_value(module)


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




class LoadedTarget:
    """What ``FILE[:NAME]`` on a command line names: workflows, agents, and the orchestrator that runs them.

    For commands that serve a file's workflows (``pyagent mcp serve``, ``pyagent a2a serve``):
    ``NAME`` picks an orchestrator (its workflows), one workflow, or one agent by variable name
    or by its ``name``. Without it: the file's orchestrator's workflows when it has one that
    has workflows, else every workflow at module level; ``agents`` are the module-level agents.
    Runs go through the orchestrator when there is one, so its monitors and store apply.
    """

    def __init__(self, path: Path, module: Any, selector: str | None) -> None:
        from pyagent.controller import Orchestrator
        from pyagent.model.agents import Agent
        from pyagent.workflow import Workflow

        self.path = path
        self.module = module
        self.selector = selector
        names = vars(module)
        orchestrators = {k: v for k, v in names.items() if isinstance(v, Orchestrator)}
        workflows = {k: v for k, v in names.items() if isinstance(v, Workflow)}
        agents = {k: v for k, v in names.items()
                  if isinstance(v, Agent) and not isinstance(v, (Workflow, type))}
        self.orchestrator: Orchestrator | None = None
        self.workflows: dict[str, Workflow] = {}
        self.agents: dict[str, Any] = {}
        if selector is not None:
            picked = names.get(selector)
            if picked is None:
                picked = next((v for v in [*workflows.values(), *agents.values()]
                               if getattr(v, "name", None) == selector), None)
            if isinstance(picked, Orchestrator):
                self.orchestrator = picked
                self.workflows = dict(picked.workflows)
            elif isinstance(picked, Workflow):
                self.workflows = {picked.name: picked}
            elif picked is not None and picked in agents.values():
                self.agents = {picked.name: picked}
            else:
                have = ", ".join([*orchestrators, *workflows, *agents]) or "none"
                raise ConfigError(f"{path} has no orchestrator, workflow or agent named {selector!r} "
                                  f"(it has: {have})")
        else:
            if len(orchestrators) == 1:
                self.orchestrator = next(iter(orchestrators.values()))
            chosen = dict(self.orchestrator.workflows) if self.orchestrator is not None else {}
            self.workflows = chosen or {wf.name: wf for wf in workflows.values()}
            self.agents = {a.name: a for a in agents.values()}
        if not self.workflows and not self.agents:
            raise ConfigError(f"{path} defines no workflow or agent at module level")

    async def run(self, workflow: Any, input: Any = None, *, on_event: Any = None,
                  run_id: str | None = None) -> Any:
        """Run one of the workflows, through the orchestrator when there is one."""
        if self.orchestrator is not None and workflow.name in self.orchestrator.workflows:
            return await self.orchestrator.run_workflow(workflow, input, on_event=on_event, run_id=run_id)
        return await workflow.run(input, on_event=on_event, run_id=run_id)


def load_target(target: str) -> LoadedTarget:
    """Import ``FILE[:NAME]`` and say what it defines (see :class:`LoadedTarget`).

    Errors are the command line's: one line naming the problem (exit code 2).
    """
    file_part, _, wanted = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file_part)
    return LoadedTarget(path, load_module(path), wanted or None)
