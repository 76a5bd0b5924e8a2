"""pyagent-mcp test fixtures: the kernel's, and this folder on the path for mcp_helpers."""

import sys
from pathlib import Path

from pyagent.testing_fixtures import *  # noqa: F403

sys.path.insert(0, str(Path(__file__).resolve().parent))
