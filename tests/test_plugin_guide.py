"""docs/writing-a-pattern-plugin.md works as written: its commands and files, run in order in a fresh venv.

Shell blocks run as they are, in one shell, from an empty folder; a Python block whose first
line is ``# PATH`` is written to PATH at that point; the TOML block is what the scaffold writes.
The one edit is ``export PYAGENT=...``, which points at this checkout instead of ``~/src/pyagent``.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from pyagent.orchestrator import Task, Workflow

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-a-pattern-plugin.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PATH_LINE = re.compile(r"# ([\w./-]+\.py)\n")


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(GUIDE.read_text())]


def script() -> str:
    """The guide as one shell script: its commands, and its files written where it says."""
    lines = ["set -euo pipefail"]
    for lang, body in blocks():
        if lang == "bash":
            lines.append(re.sub(r"^export PYAGENT=.*$", f"export PYAGENT='{ROOT}'", body, flags=re.M))
        elif lang == "python":
            path = PATH_LINE.match(body)
            assert path, f"a Python block of the guide names no file, so nothing would test it:\n{body}"
            lines.append(f"cat > {path.group(1)} <<'GUIDE_EOF'\n{body}GUIDE_EOF")
    return "\n".join(lines) + "\n"


def test_every_block_of_the_guide_is_run_or_checked() -> None:
    langs = [lang for lang, _ in blocks()]
    assert set(langs) <= {"bash", "python", "toml", ""}, langs
    assert langs.count("toml") == 1
    text = script()
    assert "export PYAGENT='" in text and "pyagent plugin new race --kind pattern" in text
    assert "cat > src/pyagent_race/__init__.py" in text and "cat > hedged.py" in text


def test_the_fixture_is_the_plugin_the_guide_builds() -> None:
    """tests/fixtures/pyagent-race (installed by test_third_party_pattern.py) is what the guide writes."""
    fixture = ROOT / "tests" / "fixtures" / "pyagent-race"
    files = {body.split("\n", 1)[0][2:]: body.split("\n", 1)[1] for lang, body in blocks()
             if lang == "python" and not body.startswith("# hedged.py")}
    assert sorted(files) == ["src/pyagent_race/__init__.py", "tests/test_race.py"]
    for path, text in files.items():
        assert (fixture / path).read_text() == text, path
    (shown,) = [body for lang, body in blocks() if lang == "toml"]
    assert (fixture / "pyproject.toml").read_text() == shown


@pytest.mark.slow
def test_the_guide_works_as_written_in_a_fresh_venv(tmp_path: Path, user_env: dict[str, str]) -> None:
    out = subprocess.run(["bash", "-c", script()], cwd=tmp_path, env=user_env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    tests = re.search(r"=+ (\d+) passed in [\d.]+s =+", out.stdout)
    assert tests and int(tests.group(1)) == 6, out.stdout[-3000:]  # 3 tests, each on asyncio and trio
    assert re.search(r"^race +pyagent-race 0\.1\.0 +patterns: race$", out.stdout, re.M), out.stdout[-3000:]
    assert out.stdout.endswith("B's answer to question\ncancelled\n"), out.stdout[-3000:]

    # The pyproject the guide shows is the one the scaffold wrote.
    (shown,) = [body for lang, body in blocks() if lang == "toml"]
    written = (tmp_path / "pyagent-race" / "pyproject.toml").read_text()
    assert tomllib.loads(shown) == tomllib.loads(written)


def test_a_race_needs_the_plugin(runtime: object) -> None:
    """Without pyagent-race installed, the guide's workflow is refused before any agent runs."""
    import anyio

    from pyagent import PluginNotInstalledError

    ran: list[str] = []
    workflow = Workflow(name="hedged", pattern="race", steps=[
        Task(name="provider-a", agent=ran.append), Task(name="provider-b", agent=ran.append)])
    with pytest.raises(PluginNotInstalledError, match="race"):
        anyio.run(workflow.run, "question")
    assert ran == []
