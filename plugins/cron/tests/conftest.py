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
def cron_runtime(runtime: Any, clock: Any) -> Any:
    """A discovering runtime (the cron plugin is installed) with a pattern and a ManualClock."""
    runtime.register(Patterns(), "one-step")
    return runtime


@pytest.fixture
def store_url() -> str:
    """A memory store URL that no other test shares."""
    import uuid

    return f"memory://{uuid.uuid4().hex}"
