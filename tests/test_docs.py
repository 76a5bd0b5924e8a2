"""The documentation holds together: links resolve, every plugin has a page, examples exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
         *sorted((ROOT / "plugins").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_every_plugin_readme_says_how_to_install() -> None:
    for readme in (ROOT / "plugins").glob("*/README.md"):
        name = readme.parent.name
        assert f"pyagent-{name}" in readme.read_text(), f"{readme} never names pyagent-{name}"


def _cli_commands(page: str) -> list[str]:
    """``pyagent run examples/...`` lines in the bash blocks of a docs page."""
    import re as _re

    text = (ROOT / "docs" / page).read_text()
    blocks = _re.findall(r"```bash\n(.*?)```", text, _re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
            if line.startswith("pyagent run examples/")]


@pytest.mark.parametrize("command", _cli_commands("cli.md") + _cli_commands("getting-started.md"))
def test_cli_page_examples_run(command: str) -> None:
    import shlex
    import subprocess
    import sys

    args = shlex.split(command)[1:]
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "COMPLETED" in out.stdout


def test_every_name_of_the_plugin_api_is_documented() -> None:
    import pyagent.plugin

    doc = (ROOT / "docs" / "hooks.md").read_text()
    section = doc[doc.index("## The plugin API"):doc.index("## Executors")]
    missing = [name for name in pyagent.plugin.__all__ if not re.search(rf"`{name}\b", section)]
    assert not missing, f"docs/hooks.md's plugin API section does not list {missing}"


def test_getting_started_quotes_the_error_of_a_missing_pattern_as_the_kernel_words_it() -> None:
    from pyagent.plugins import not_installed

    text = (ROOT / "docs" / "getting-started.md").read_text()
    assert str(not_installed("pattern", "sequential", [])) in text


def test_no_page_or_example_names_a_deprecated_module_path() -> None:
    # Old module paths still import, with a DeprecationWarning: what users copy must not.
    from pyagent._compat import MOVED

    old = re.compile(r"\b(" + "|".join(re.escape(m) for m in MOVED) + r")\b")
    found = []
    for page in [*PAGES, *sorted((ROOT / "examples").glob("*.py"))]:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for match in old.finditer(line):
                found.append(f"{page.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, found
