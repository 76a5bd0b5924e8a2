"""pyagent-a2a test fixtures: the A2A SDK's server runs on asyncio, so the tests do too."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyagent.testing_fixtures import *  # noqa: F403

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """One `pyagent a2a serve` process for a module's tests."""
    from a2a_helpers import a2a_server

    with a2a_server() as urls:
        yield urls
