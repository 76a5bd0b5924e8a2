from pyagent.testing_fixtures import *  # noqa: F403
