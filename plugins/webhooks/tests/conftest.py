from __future__ import annotations

from typing import Any

import pytest

from pyagent.plugin import hookimpl
from pyagent.testing_fixtures import *  # noqa: F403


class OneStep:
    """The smallest workflow pattern: runs each step in order (no pattern plugin is installed here)."""

    async def execute(self, run: Any) -> Any:
        value = run.input
        for step in run.workflow.steps:
            value = (await run.run_step(step, value)).output
        return value


class Patterns:
    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("sequential", OneStep())


@pytest.fixture
def hook_runtime(runtime: Any) -> Any:
    """A discovering runtime (the webhooks plugin is installed) with a workflow pattern."""
    runtime.register(Patterns(), "one-step")
    return runtime


@pytest.fixture
def store_url() -> str:
    """A memory store URL that no other test shares."""
    import uuid

    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves on asyncio only (the trio case is a test of its own)."""
    return "asyncio"
