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


def test_the_human_approval_example_as_a_terminal_session(tmp_path: Path) -> None:
    """examples/human_approval.py as its docstring runs it: one terminal starts the run, which
    waits; another lists what waits and answers it with pyagent approve; the first finishes."""
    import json
    import os
    import threading
    import time

    example = ROOT / "examples" / "human_approval.py"
    storage = "sqlite://approvals.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYAGENT_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pyagent.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    first = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "run", str(example), "--run-id", "refund-42",
                              "--input", '{"order": "A-1001", "amount": 120}'], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The first terminal's output is read by a thread: select() on the pipe misses lines that a
    # readline() already took into the file's buffer.
    assert first.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(first.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("answer with: pyagent approve refund-42" in line for line in list(seen)):
            assert time.monotonic() < deadline, "the run never said it waits:\n" + "".join(seen)
            assert reader.is_alive() or any("answer with" in line for line in list(seen)), (
                "the first terminal's run ended early:\n" + "".join(seen))
            time.sleep(0.05)

        pending = cli("pending", "--storage", storage)
        assert pending.returncode == 0, pending.stderr
        assert "Approve a refund of $120 for order A-1001?" in pending.stdout
        assert 'answer: {"approved": boolean, "comment"?: string}' in pending.stdout
        (question,) = json.loads(cli("pending", "--storage", storage, "--json").stdout)

        answered = cli("approve", "refund-42", "--answer", '{"approved": true, "comment": "loyal customer"}',
                       "--by", "alice", "--storage", storage)
        assert answered.returncode == 0, answered.stderr
        assert "The run goes on in the process that holds it" in answered.stdout

        first.wait(timeout=60)
        reader.join(timeout=10)
        output = "".join(seen)
        assert first.returncode == 0, output
        assert "COMPLETED" in output and "output: 'refunded $120 for order A-1001'" in output
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    history = cli("history", "--storage", storage)
    assert f"(question {question['id']})" in history.stdout
    assert 'answered by alice: {"approved": true, "comment": "loyal customer"}' in history.stdout
