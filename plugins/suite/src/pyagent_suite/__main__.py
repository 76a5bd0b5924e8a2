"""``python -m pyagent_suite``: report which default plugins are missing (exit 1 if any)."""

from __future__ import annotations

import sys

from . import DEFAULTS, missing

gaps = missing()
if gaps:
    print("missing: " + ", ".join(gaps))
    sys.exit(1)
print(f"all {len(DEFAULTS)} default features installed")
