"""Every runnable example runs offline and exits 0 (everything installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYAGENT_TEST_POSTGRES_URL": ""})
    assert out.returncode == 0, f"{path.name} failed:\n{out.stdout}\n{out.stderr}"
    assert out.stdout.strip(), f"{path.name} printed nothing"


def test_demo_through_the_cli(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "run", str(ROOT / "examples" / "demo.py"),
                          "--input", '"pyagent"'], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "COMPLETED" in out.stdout and "published: 3 changes, 6 mentions" in out.stdout
    # Nested progress is shown, by the console monitor (installed here) under the task that runs it.
    lines = out.stdout.splitlines()
    task = next(x for x in lines if x.endswith("▶ Research"))
    nested = next(x for x in lines if "▶ workflow 'Multi-Source Research' started" in x)
    assert lines.index(task) < lines.index(nested)
    assert len(nested) - len(nested[10:].lstrip()) > len(task) - len(task[10:].lstrip())
