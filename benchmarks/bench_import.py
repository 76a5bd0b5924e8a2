"""``import pyagent`` time in fresh interpreters (target <= 100 ms), and plugin discovery time."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CODE = """
import json, time
t = time.perf_counter()
import pyagent, pyagent.orchestrator
imported = time.perf_counter() - t
from pyagent.plugins import get_runtime
t = time.perf_counter()
rt = get_runtime()
rt.registry("patterns")
discovered = time.perf_counter() - t
print(json.dumps({"import": imported, "discover": discovered, "plugins": len(rt.plugins)}))
"""


def main() -> None:
    # As on a user's machine, bytecode is cached: one untimed run writes any missing .pyc files.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env)
    runs = [json.loads(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                                      env=env).stdout)
            for _ in range(11)]
    imp = statistics.median(r["import"] for r in runs) * 1e3
    disc = statistics.median(r["discover"] for r in runs) * 1e3
    verdict = "meets" if imp <= 100 else "MISSES"
    print(f"import pyagent: {imp:.1f} ms median of {len(runs)} fresh interpreters — {verdict} target <= 100 ms; "
          f"discovering {runs[0]['plugins']} plugins afterwards: {disc:.1f} ms")


if __name__ == "__main__":
    main()
