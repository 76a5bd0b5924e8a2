"""How the kernel finds these stores: entry points by URL scheme, heavy imports only on use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pyagent.durability.store import Store
from pyagent.plugins import get_runtime


def test_every_scheme_is_a_store_driver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rt = get_runtime()
    assert {"sqlite", "postgresql", "postgres"} <= set(rt.driver_names("stores"))
    for scheme, url in [
        ("sqlite", f"sqlite:///{tmp_path}/a.db"),
        ("postgresql", "postgresql://u@127.0.0.1/d"),
        ("postgres", "postgres://u@127.0.0.1/d"),
    ]:
        store = rt.driver("stores", scheme)(url)
        assert isinstance(store, Store)
        assert store.url == url


def test_sqlalchemy_and_the_drivers_load_only_when_a_store_is_created() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from pyagent.plugins import get_runtime
        rt = get_runtime()
        rt.ensure_loaded()
        factory = rt.driver("stores", "sqlite")
        heavy = ("sqlalchemy", "aiosqlite", "asyncpg")
        before = [m for m in heavy if m in sys.modules]
        factory("sqlite:///x.db")
        after_sqlite = [m for m in heavy if m in sys.modules]
        rt.driver("stores", "postgresql")("postgresql://u@h/d")
        print(json.dumps([before, after_sqlite]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after_sqlite = json.loads(out.stdout)
    assert before == []
    assert "sqlalchemy" in after_sqlite
