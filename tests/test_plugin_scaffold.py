"""``pyagent plugin new`` makes a plugin that installs into a fresh venv and passes its tests unedited.

For every kind: a new venv holding only a wheel of this checkout's kernel (so the templates
must ship in the wheel), the plugin written by that venv's own ``pyagent plugin new``,
installed from its folder like any distribution, its generated tests run there by pytest.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyagent.cli.scaffold import KINDS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "kernel" / "src" / "pyagent" / "cli" / "templates"

# Where each kind shows up in `pyagent plugins --json`.
LISTED_AS = {"pattern": "patterns", "router": "routers", "monitor": "monitors", "trigger": "triggers"}


@pytest.mark.slow
def test_the_kernel_wheel_ships_every_template(kernel_wheel: Path) -> None:
    shipped = set(zipfile.ZipFile(kernel_wheel).namelist())
    templates = {f"pyagent/cli/{p.relative_to(TEMPLATES.parent).as_posix()}"
                 for p in TEMPLATES.rglob("*.tmpl")}
    assert len(templates) >= 20
    assert templates <= shipped, sorted(templates - shipped)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_of_every_kind_installs_and_passes_its_tests(
    kind: str, fresh_venv: Callable[[str], Any], tmp_path: Path
) -> None:
    venv = fresh_venv("venv")
    name = f"acme-{kind}"
    made = venv.run(venv.bin("pyagent"), "plugin", "new", name, "--kind", kind, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / f"pyagent-{name}"
    assert (folder / "src" / f"pyagent_acme_{kind}" / "__init__.py").is_file()

    venv.install(f"{folder}[test]")
    tests = venv.run(venv.bin("python"), "-m", "pytest", "-p", "no:cacheprovider", "-ra", cwd=folder)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 4, summary
    assert not re.search(r"skipped|xfail|warning|error", summary), summary

    listing = venv.run(venv.bin("pyagent"), "plugins", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    report = json.loads(listing.stdout)
    assert report["failures"] == []
    if kind in ("store", "executor"):
        assert name in report["drivers"][f"{kind}s"]
    else:
        (plugin,) = [p for p in report["plugins"] if p["name"] == name]
        assert plugin["distribution"] == f"pyagent-{name}"
        assert plugin["provides"] == {LISTED_AS[kind]: [name]}
