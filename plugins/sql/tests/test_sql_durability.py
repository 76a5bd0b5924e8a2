"""A process killed with SIGKILL keeps every checkpoint whose append had returned."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pyagent.plugins import get_runtime
    from pyagent.durability.store import Checkpoint, RunHeader

    async def main(url):
        store = get_runtime().driver("stores", url.split("://")[0])(url)
        await store.open()
        await store.save_run(RunHeader("victim", "wf", "running", 1.0))
        for seq in range(1_000_000):
            await store.append_checkpoint(Checkpoint("victim", seq, "delta", b"%d" % seq, 1.0))
            print(seq, flush=True)  # only after the append returned

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def test_checkpoints_acknowledged_before_a_sigkill_survive_it(url: str, db_query: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        acknowledged = -1
        while acknowledged < 200:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the writer stopped early: {proc.wait(30)} {proc.stderr.read()}")  # type: ignore[union-attr]
            acknowledged = int(line)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    stored = db_query(url, "SELECT count(*), max(seq) FROM pyagent_checkpoints WHERE run_id = 'victim'")
    count, last = stored[0]
    assert last >= acknowledged
    assert count == last + 1  # no gaps
