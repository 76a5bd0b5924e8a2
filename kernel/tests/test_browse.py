"""Reading runs back to show them: pages of records paged in the store, and one run in full."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, Task, Workflow
from pyagent.durability.store import RunHeader
from pyagent.model.tasks import RetryConfig, TaskStatus
from pyagent.orchestrator import Orchestrator
from pyagent.plugin import list_headers, list_runs, open_store, read_run

pytestmark = pytest.mark.anyio


async def test_pages_come_from_the_store_newest_first_with_filters(drt: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    ok = orch.add_workflow(Workflow(name="ok", steps=[Task(name="a", agent=lambda x: f"a({x})")]))
    bad = orch.add_workflow(Workflow(name="bad", steps=[Task(name="b", agent=lambda x: 1 / 0)]))
    ids = []
    for i in range(7):
        wf = bad if i % 3 == 0 else ok
        ids.append((await orch.run_workflow(wf, i, run_id=f"run-{i}")).run_id)
    store = await open_store(store_url)
    try:
        newest = [r.run_id for r in await list_runs(store, limit=3)]
        assert newest == ["run-6", "run-5", "run-4"]
        assert [r.run_id for r in await list_runs(store, limit=3, offset=3)] == ["run-3", "run-2", "run-1"]
        assert [r.run_id for r in await list_runs(store, limit=3, offset=6)] == ["run-0"]
        failed = await list_runs(store, status="failed", limit=None)
        assert [r.run_id for r in failed] == ["run-6", "run-3", "run-0"]
        assert "ZeroDivisionError" in (failed[0].error or "")
        assert [r.run_id for r in await list_runs(store, workflow=ok, limit=2, offset=1)] == ["run-4", "run-2"]
        headers = await list_headers(store, limit=None)
        cut = headers[2].started_at
        assert [r.run_id for r in await list_runs(store, until=cut, limit=None)] == [
            h.run_id for h in headers if h.started_at < cut]
        with pytest.raises(ConfigurationError, match="offset=-1 must be a whole number"):
            await list_runs(store, offset=-1)
        with pytest.raises(ConfigurationError, match="status='lost' is not a run status"):
            await list_runs(store, status="lost")
    finally:
        await store.close()


async def test_a_store_without_paging_is_paged_by_the_kernel(drt: Any, store_url: str) -> None:
    class OldStore:
        """A store written before ``until`` and ``offset``: its list_runs takes neither."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.url = inner, inner.url

        async def list_runs(self, *, workflow: str | None = None, since: float | None = None,
                            status: str | None = None, limit: int | None = None) -> list[RunHeader]:
            return list(await self.inner.list_runs(workflow=workflow, since=since, status=status, limit=limit))

    inner = await open_store(store_url)
    for i in range(5):
        await inner.save_run(RunHeader(run_id=f"r{i}", workflow="w", status="completed", started_at=100.0 + i))
    old = OldStore(inner)
    assert [h.run_id for h in await list_headers(old, limit=2, offset=1)] == ["r3", "r2"]
    assert [h.run_id for h in await list_headers(old, until=103.0, limit=2)] == ["r2", "r1"]


async def test_read_run_has_the_record_the_state_and_the_lease(drt: Any, store_url: str) -> None:
    calls = {"n": 0}

    def flaky(x: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TimeoutError("first try times out")
        return f"second try on {x}"

    wf = Workflow(name="flaky", steps=[Task(name="fetch", agent=flaky, retry_config=RetryConfig(max_retries=2, initial_delay=0)),
                                       Task(name="use", agent=lambda x: x.upper())],
                  checkpointing={"storage": store_url})
    result = await wf.run({"api_key": "k", "q": "x"}, run_id="one")
    assert result.status is TaskStatus.COMPLETED
    store = await open_store(store_url)
    try:
        details = await read_run(store, "one")
        assert details is not None and details.state is not None and details.state_error is None
        assert details.record.status is TaskStatus.COMPLETED and details.record.tasks_completed == 2
        fetch = next(t for t in details.record.tasks if t.name == "fetch")
        assert [a.error for a in fetch.attempts] == ["TimeoutError: first try times out", None]
        assert details.state.input == {"api_key": "k", "q": "x"}
        assert details.state.tasks["use"].output == "SECOND TRY ON {'API_KEY': 'K', 'Q': 'X'}"
        assert details.lease is None  # released when the run ended
        assert details.checkpoints >= 1
        assert await read_run(store, "nope") is None
    finally:
        await store.close()


async def test_read_run_of_a_run_recorded_without_checkpoints_says_why_there_is_no_state(
        drt: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    wf = orch.add_workflow(Workflow(name="plain", steps=[Task(name="a", agent=lambda x: x)]))
    await orch.run_workflow(wf, "in", run_id="plain-1")
    store = await open_store(store_url)
    try:
        details = await read_run(store, "plain-1")
        assert details is not None and details.state is None
        assert "no checkpoints" in (details.state_error or "")
        assert details.record.tasks[0].name == "a"
    finally:
        await store.close()


async def test_a_running_run_shows_its_owner_and_progress(drt: Any, store_url: str) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    wf = Workflow(name="slow", steps=[Task(name="quick", agent=lambda x: x), Task(name="hang", agent=hang)],
                  checkpointing={"storage": store_url})
    store = await open_store(store_url)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: wf.run("go", run_id="live"))
            with anyio.fail_after(5):
                await started.wait()
            details = await read_run(store, "live")
            assert details is not None and details.lease is not None
            assert details.record.status is TaskStatus.RUNNING and details.record.tasks_completed == 1
            (listed,) = await list_runs(store, status="running")
            assert listed.run_id == "live" and listed.tasks_completed == 1 and listed.tasks_total == 2
            assert wf.cancel("live", reason="test over")
        details = await read_run(store, "live")
        assert details is not None and details.record.status is TaskStatus.CANCELLED
        assert details.record.error == "RunCancelledError: test over"
    finally:
        await store.close()
