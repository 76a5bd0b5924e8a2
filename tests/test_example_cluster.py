"""examples/cluster: the compose file's structure, the cluster's configuration, and the same
workflow file served the laptop way (local executor, SQLite, a real ``pyagent serve``).

Docker cannot run here; what can be checked without it is: the compose file is well formed
and wires what the README says (PostgreSQL, a Dask scheduler and two workers, three replicas
of one image), the Dockerfile installs paths that exist, the cluster's ``pyagent.toml`` is
valid settings naming Dask and PostgreSQL, and ``flows.py`` runs unchanged without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import Served

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cluster"


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((EXAMPLE / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_compose_file_runs_postgres_a_dask_cluster_and_three_replicas() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "scheduler", "worker-1", "worker-2", "pyagent-1", "pyagent-2", "pyagent-3"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["scheduler"]["command"][:2] == ["dask", "scheduler"]
    for worker in ("worker-1", "worker-2"):
        assert services[worker]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
        assert services[worker]["image"] == services["scheduler"]["image"]  # the replicas' packages
    ports = set()
    for name in ("pyagent-1", "pyagent-2", "pyagent-3"):
        replica = services[name]
        assert replica["image"] == services["scheduler"]["image"]
        assert replica["command"][:3] == ["pyagent", "serve", "flows.py"]
        assert replica["command"][replica["command"].index("--host") + 1] == "0.0.0.0"
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert replica["environment"]["PYAGENT_DASHBOARD_TOKEN"]  # no dashboard open to the network
        (port,) = replica["ports"]
        ports.add(port.split(":")[0])
        grace = float(replica["command"][replica["command"].index("--grace") + 1])
        assert float(replica["stop_grace_period"].rstrip("s")) > grace  # runs finish or are checkpointed
    assert len(ports) == 3
    build = services["pyagent-1"]["build"]
    assert (EXAMPLE / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).is_file()


def test_the_dockerfile_installs_what_exists_and_what_the_file_needs() -> None:
    text = (EXAMPLE / "Dockerfile").read_text()
    installed = re.findall(r"/src/(kernel|plugins/[\w-]+)", text.split("RUN pip install", 1)[1].split("&&", 1)[0])
    assert installed[0] == "kernel"
    for path in installed:
        assert (ROOT / path / "pyproject.toml").is_file(), path
    needed = {"plugins/sql", "plugins/cron", "plugins/webhooks", "plugins/graph", "plugins/sequential", "plugins/dask"}
    assert needed <= set(installed)
    for copied in re.findall(r"COPY (examples/cluster/\S+)", text):
        assert (ROOT / copied).is_file(), copied
    assert "PYTHONPATH=/app" in text  # the Dask workers import shop.py from there


def test_the_cluster_configuration_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyagent.config import load_settings

    for var in [v for v in os.environ if v.startswith("PYAGENT_")]:
        monkeypatch.delenv(var)
    settings = load_settings(EXAMPLE / "deploy")
    assert settings.executor == "dask" and settings.dask_address == "tcp://scheduler:8786"
    assert settings.storage is not None and settings.storage.startswith("postgresql://")
    assert "@postgres:5432/" in settings.storage  # the compose service's name
    laptop = load_settings(EXAMPLE)  # where flows.py is: no cluster settings found
    assert laptop.executor is None and laptop.storage is None


def wait_status(url: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = dict(httpx.get(f"{url}/runs/{run_id}", timeout=10).json())
        if found.get("status") in ("completed", "failed"):
            return found
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_the_same_file_serves_on_a_laptop(tmp_path: Path, serve_process: Callable[..., Served]) -> None:
    """``pyagent serve flows.py`` as on a laptop: 127.0.0.1, any free port, stopped by the test."""
    for name in ("flows.py", "shop.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYAGENT_") and k != "ORDERS_TOKEN"}
    served = serve_process("flows.py", "--port", "0", cwd=tmp_path, env=env)
    try:
        order = {"customer": "ada", "items": {"widget": 3}}
        first = httpx.post(f"{served.url}/orders", json=order, headers={"Idempotency-Key": "order-1"}, timeout=10)
        again = httpx.post(f"{served.url}/orders", json=order, headers={"Idempotency-Key": "order-1"}, timeout=10)
        assert first.status_code == again.status_code == 202
        run_id = first.json()["run_id"]
        assert again.json()["run_id"] == run_id and again.headers.get("idempotent-replayed") == "true"
        done = wait_status(served.url, run_id)
        assert done["status"] == "completed" and done["output"] == "order accepted: 13.50 EUR"
        assert done["tasks_completed"] == done["tasks_total"] == 5
        held = httpx.post(f"{served.url}/orders", json={"items": {"gizmo": 5}}, timeout=10).json()["run_id"]
        assert wait_status(served.url, held)["output"].startswith("order held")
        bad = httpx.post(f"{served.url}/orders", json={"items": {"sprocket": 1}}, timeout=10).json()["run_id"]
        failed = wait_status(served.url, bad)
        assert failed["status"] == "failed" and "unknown items: sprocket" in failed["error"]
        assert "cron '*/5 * * * *'" in served.output and "'restock'" in served.output  # the schedule is served
    finally:
        code = served.stop()
    assert code == 0, served.output
    assert (tmp_path / "runs.db").is_file()  # the laptop's store: SQLite next to the file


def test_the_scheduled_workflow_runs_on_a_laptop(tmp_path: Path) -> None:
    for name in ("flows.py", "shop.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYAGENT_")}
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "run", "flows.py:restock", "--json"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"restock: gizmo"' in out.stdout
