"""The suite installs every default plugin, and each is discovered."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from pyagent_suite import DEFAULTS, missing


def test_every_default_plugin_is_installed_and_discovered(runtime: Any) -> None:
    assert missing() == []
    assert {"sequential", "parallel", "graph", "supervisor", "consensus", "debate", "chain_of_thought"} <= set(
        runtime.registry("patterns"))
    assert runtime.default_router_name() == "keyword"
    assert not runtime.failures, runtime.failures


def test_module_entry_point_reports_success() -> None:
    out = subprocess.run([sys.executable, "-m", "pyagent_suite"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"all {len(DEFAULTS)} default features installed" in out.stdout
