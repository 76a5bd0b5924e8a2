"""pytest fixtures shared by the kernel's and the plugins' test suites.

Use from a ``conftest.py`` with ``from pyagent.testing_fixtures import *``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyagent import config
from pyagent.plugins import Runtime, set_runtime
from pyagent.testing import ManualClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are read again in every test, so environment changes made by a test apply."""
    config.reset()
    yield
    config.reset()


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    """A fresh process-wide runtime that discovers installed plugins, restored afterwards."""
    rt = Runtime()
    previous = set_runtime(rt)
    try:
        yield rt
    finally:
        set_runtime(previous)


@pytest.fixture
def bare_runtime() -> Iterator[Runtime]:
    """A fresh runtime with NO plugin discovered: register throwaway plugins on it."""
    rt = Runtime(discover=False)
    previous = set_runtime(rt)
    try:
        yield rt
    finally:
        set_runtime(previous)


@pytest.fixture
def clock(runtime: Runtime) -> ManualClock:
    """A manual clock installed on the runtime: retries and breakers take no real time."""
    c = ManualClock()
    runtime.clock = c
    return c


@pytest.fixture
def chain_runtime(runtime: Runtime) -> Runtime:
    """The discovering runtime with a pass-forward ``sequential`` pattern of its own, for plugin
    tests that need runs without installing a pattern plugin."""
    from pyagent.testing import PassForward

    runtime.register(PassForward.plugin(), "pass-forward")
    return runtime
