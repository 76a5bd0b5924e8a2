"""Kernel test fixtures: the kernel's tests run with NO plugin installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyagent import hookimpl
from pyagent.engine import WorkflowRun
from pyagent.testing_fixtures import *  # noqa: F403


class MiniSequential:
    """A minimal pass-forward pattern, registered on a bare runtime in tests."""

    async def execute(self, run: WorkflowRun) -> Any:
        value = run.input
        for step in run.workflow.steps:
            rec = await run.run_step(step, value)
            if rec.status.value == "completed":
                value = rec.output
        return value


class MiniSequentialPlugin:
    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("sequential", MiniSequential())


class Service:
    """An agent whose health the test switches, counting calls."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    def __call__(self, x: Any) -> str:
        self.calls += 1
        if not self.healthy:
            raise ConnectionError("service unavailable")
        return "ok"


@pytest.fixture
def service() -> Service:
    """A fresh ``Service``: an agent that raises ConnectionError until ``healthy`` is set."""
    return Service()


def make_distribution(root: Path, dist: str, module: str, source: str, entry_points: str) -> None:
    """Write an installed-looking distribution (module + dist-info) under ``root`` for sys.path."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def mini_runtime(bare_runtime: Any) -> Any:
    """A bare runtime with a throwaway pass-forward pattern registered as 'sequential'."""
    bare_runtime.register(MiniSequentialPlugin(), "mini")
    return bare_runtime


@pytest.fixture
def distribution() -> Callable[..., None]:
    """Write a fake installed distribution (module + dist-info with entry points)."""
    return make_distribution


class MiniFanPlugin:
    """A minimal parallel-like pattern: every step gets the input, all run concurrently."""

    class Fan:
        async def execute(self, run: WorkflowRun) -> Any:
            import anyio

            async with anyio.create_task_group() as tg:
                for step in run.workflow.steps:
                    tg.start_soon(run.run_step, step, run.input)
            return dict(run.results)

    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("fan", self.Fan())


@pytest.fixture
def drt(mini_runtime: Any) -> Any:
    """For durability tests: mini patterns ('sequential', 'fan') and a ManualClock on the runtime."""
    from pyagent.testing import ManualClock

    mini_runtime.register(MiniFanPlugin(), "mini-fan")
    mini_runtime.clock = ManualClock()
    return mini_runtime


@pytest.fixture
def store_url() -> str:
    """A memory store URL that no other test shares."""
    import uuid

    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def serving_runtime(runtime: Any) -> Any:
    """A discovering runtime (so the kernel's own 'event' trigger is there) with the mini patterns."""
    runtime.register(MiniSequentialPlugin(), "mini")
    runtime.register(MiniFanPlugin(), "mini-fan")
    return runtime
