"""Bad input is caught when a workflow is built or before any agent runs, with a message that says the fix."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import ConfigurationError, PluginNotInstalledError
from pyagent.orchestrator import ConditionalTask, ExecutionPattern, Task, Workflow


def noop(x: Any) -> Any:
    return x


def test_step_that_is_not_a_task() -> None:
    with pytest.raises(ValidationError, match=r"step 1 is a str .*not a Task: wrap it as Task"):
        Workflow(name="w", steps=[Task(name="a", agent=noop), "b"])


def test_duplicate_task_names_including_branches() -> None:
    with pytest.raises(ValidationError, match="duplicate task name 'a'"):
        Workflow(name="w", steps=[Task(name="a", agent=noop), Task(name="a", agent=noop)])
    with pytest.raises(ValidationError, match="duplicate task name 'a'"):
        Workflow(name="w", steps=[
            Task(name="a", agent=noop),
            ConditionalTask(condition=lambda c: True, if_true=Task(name="a", agent=noop)),
        ])


def test_cycle_and_unknown_dependency() -> None:
    a = Task(name="a", agent=noop, dependencies=["b"])
    b = Task(name="b", agent=noop, dependencies=["a"])
    with pytest.raises(ValidationError, match=r"dependency cycle in workflow 'w': (a -> b -> a|b -> a -> b)"):
        Workflow(name="w", steps=[a, b])
    with pytest.raises(ValidationError, match="depends on 'ghost', which is not a step"):
        Workflow(name="w", steps=[Task(name="a", agent=noop, dependencies=["ghost"])])
    with pytest.raises(ValidationError, match="depends on itself"):
        Workflow(name="w", steps=[Task(name="a", agent=noop, dependencies=["a"])])


def test_dependencies_accept_task_objects() -> None:
    a = Task(name="a", agent=noop)
    b = Task(name="b", agent=noop, dependencies=[a])
    assert b.dependencies == ["a"]
    wf = Workflow(name="w", steps=[a, b])
    assert wf.pattern_name == "graph"  # dependencies imply a graph
    assert Workflow(name="w2", steps=[Task(name="x", agent=noop)]).pattern_name == "sequential"


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ValidationError, match="reducer"):
        Workflow(name="w", steps=[Task(name="a", agent=noop)], reducer="merge")
    with pytest.raises(ValidationError, match="max_concurrency"):
        Workflow(name="w", steps=[Task(name="a", agent=noop)], max_concurrency=0)
    with pytest.raises(ValidationError, match="failure_policy"):
        Workflow(name="w", steps=[Task(name="a", agent=noop)], failure_policy="ignore")
    with pytest.raises(ValidationError, match="agent must be an agent or a callable, got int"):
        Task(name="a", agent=7)
    with pytest.raises(ValidationError, match="backoff"):
        Task(name="a", agent=noop, retry_config={"backoff": "fibonacci"})
    with pytest.raises(ValidationError, match="initial_delay"):
        Task(name="a", agent=noop, retry_config={"initial_delay": -1})


def test_pattern_names_normalise() -> None:
    wf = Workflow(name="w", pattern="PARALLEL", steps=[Task(name="a", agent=noop)])
    assert wf.pattern is ExecutionPattern.PARALLEL
    assert Workflow(name="w", pattern="my_custom", steps=[Task(name="a", agent=noop)]).pattern_name == "my_custom"


def test_missing_pattern_plugin_names_the_distribution(bare_runtime: Any) -> None:
    wf = Workflow(name="w", pattern=ExecutionPattern.SEQUENTIAL, steps=[Task(name="a", agent=noop)])
    with pytest.raises(PluginNotInstalledError, match=r"pattern 'sequential' is not installed: pip install pyagent-sequential \(from a clone of pyagent: pip install ./plugins/sequential"):
        anyio.run(wf.run)
    custom = Workflow(name="w", pattern="zigzag", steps=[Task(name="a", agent=noop)])
    with pytest.raises(PluginNotInstalledError, match=r"unknown pattern 'zigzag'.*install a plugin that registers it"):
        anyio.run(custom.run)


def test_task_without_agent_fails_before_anything_runs(mini_runtime: Any) -> None:
    ran: list[str] = []
    wf = Workflow(name="w", steps=[Task(name="Prep", agent=lambda x: ran.append("prep")), Task(name="Analyze")])
    with pytest.raises(ConfigurationError, match=r"task 'Analyze' in workflow 'w' has no agent"):
        anyio.run(wf.run)
    assert ran == []


def test_empty_workflow(mini_runtime: Any) -> None:
    with pytest.raises(ConfigurationError, match="has no steps"):
        anyio.run(Workflow(name="Protected Flow").run)


def test_deep_dependency_chain_listed_in_any_order() -> None:
    """Cycle detection must not depend on Python's recursion limit."""
    n = 5000
    steps = [Task(name=f"t{i}", agent=noop, dependencies=[f"t{i - 1}"] if i else []) for i in range(n)]
    assert Workflow(name="deep", steps=steps[::-1]).pattern_name == "graph"
    looped = [Task(name="t0", agent=noop, dependencies=[f"t{n - 1}"]), *steps[1:]]
    with pytest.raises(ValidationError, match=r"dependency cycle in workflow 'deep': t\d+ -> "):
        Workflow(name="deep", steps=looped[::-1])


def test_cycle_through_a_conditional_branch_is_rejected_at_build() -> None:
    x = Task(name="X", agent=noop, dependencies=["Approve"])
    gate = ConditionalTask(name="Gate", condition=lambda c: True, if_true=Task(name="Approve", agent=noop),
                           dependencies=[x])
    with pytest.raises(ValidationError, match=r"dependency cycle in workflow 'g': (X -> Gate -> X|Gate -> X -> Gate)"):
        Workflow(name="g", steps=[x, gate])
    own = ConditionalTask(name="Own", condition=lambda c: True, if_true=Task(name="Yes", agent=noop),
                          dependencies=["Yes"])
    with pytest.raises(ValidationError, match="'Own' depends on its own branch 'Yes'"):
        Workflow(name="g", steps=[own])


def test_dependencies_on_a_branch_task_are_refused_with_the_fix() -> None:
    """A branch runs when its conditional does; dependencies declared on it would be ignored."""
    x = Task(name="x", agent=noop)
    gate = ConditionalTask(name="Gate", condition=lambda c: True,
                           if_true=Task(name="Approve", agent=noop, dependencies=[x]))
    with pytest.raises(ValidationError, match=r"'Approve' is a branch of conditional 'Gate'.*"
                                              r"ConditionalTask\(\.\.\., dependencies=\['x'\]\)"):
        Workflow(name="g", steps=[x, gate])


def test_a_nested_workflows_bad_configuration_is_found_before_anything_runs(mini_runtime: Any) -> None:
    ran: list[str] = []
    inner = Workflow(name="inner", pattern="zigzag", steps=[Task(name="i", agent=noop)])
    outer = Workflow(name="outer", steps=[Task(name="first", agent=lambda x: ran.append("first")),
                                          Task(name="sub", agent=inner)])
    with pytest.raises(PluginNotInstalledError, match="unknown pattern 'zigzag'"):
        anyio.run(outer.run)
    no_agent = Workflow(name="inner2", steps=[Task(name="Analyze")])
    deeper = Workflow(name="middle", steps=[Task(name="sub", agent=no_agent)])
    top = Workflow(name="top", steps=[Task(name="first", agent=lambda x: ran.append("first")),
                                      Task(name="middle", agent=deeper)])
    with pytest.raises(ConfigurationError, match="task 'Analyze' in workflow 'inner2' has no agent"):
        anyio.run(top.run)
    assert ran == []


def test_a_workflow_declares_the_type_of_its_input() -> None:
    from pydantic import BaseModel

    from pyagent.orchestrator import Task, Workflow

    class Question(BaseModel):
        text: str

    wf = Workflow(name="w", input_model=Question, steps=[Task(name="a", agent=lambda q: q)])
    assert wf.input_model is Question
    with pytest.raises(ValueError, match=r"input_model .* has no JSON schema"):
        Workflow(name="w", input_model=object(), steps=[Task(name="a", agent=lambda q: q)])
