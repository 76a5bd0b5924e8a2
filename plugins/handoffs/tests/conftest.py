import pyagent_handoffs
import pytest

from pyagent.testing_fixtures import *  # noqa: F403


@pytest.fixture(autouse=True)
def _handoffs_registered(request: pytest.FixtureRequest) -> None:
    """A test on the kernel's bare runtime gets this plugin registered, as discovery would."""
    if "bare_runtime" in request.fixturenames:
        request.getfixturevalue("bare_runtime").register(pyagent_handoffs, "handoffs")
