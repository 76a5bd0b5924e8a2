"""One owner per run: every run recorded in a store holds a lease on its run id while it goes on.

The memory store is used here (its leases behave as the SQL stores' do: the store conformance
tests in pyagent-sql check that); real processes on SQLite and PostgreSQL are in the root and
plugin suites.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import ConfigurationError, RunOwnedError, Task, Workflow
from pyagent._defaults.memory_store import MemoryStore
from pyagent.controller import Orchestrator
from pyagent.durability.ownership import _machine_key, owner_id
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents

pytestmark = pytest.mark.anyio


def chain(steps: list[Any], url: str, name: str = "Owned", **cp: Any) -> Workflow:
    return Workflow(name=name, steps=steps, checkpointing={"storage": url, **cp})


def counted(agents: Agents, n: int) -> list[Task]:
    return [Task(name=f"t{i}", agent=agents[f"t{i}"]) for i in range(n)]


def hanging(name: str, reached: anyio.Event, release: anyio.Event | None = None,
            calls: dict[str, int] | None = None) -> Any:
    async def fn(x: Any) -> Any:
        if calls is not None:
            calls[name] = calls.get(name, 0) + 1
        reached.set()
        if release is None:
            await anyio.sleep_forever()
        else:
            await release.wait()
        return f"{x}>{name}"

    fn.__name__ = name
    return fn


async def lease_of(url: str, run_id: str) -> Any:
    return await MemoryStore(url).get_lease(run_id)


async def test_a_fresh_run_under_the_run_id_of_a_run_going_on_is_refused(drt: Runtime, store_url: str) -> None:
    reached = anyio.Event()
    agents = Agents()
    first = chain([Task(name="t0", agent=hanging("t0", reached))], store_url)
    second = chain(counted(agents, 2), store_url)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: first.run("in", run_id="nightly"))
            await reached.wait()
            with pytest.raises(RunOwnedError, match=r"run 'nightly' in memory://.* is owned by") as owned:
                await second.run("in", run_id="nightly")
            orchestrator = Orchestrator()
            orchestrator.add_workflow(second)
            with pytest.raises(RunOwnedError):
                await orchestrator.run_workflow("Owned", run_id="nightly")
            tg.cancel_scope.cancel()
    assert agents.calls == {}
    assert owned.value.run_id == "nightly" and owned.value.owner == owner_id()
    assert owned.value.expires_at == drt.clock.time() + 15.0
    assert "15.0 s" in str(owned.value) and "wait=True" in str(owned.value)
    assert await lease_of(store_url, "nightly") is None  # the cancelled first run released it


async def test_two_resumes_at_once_run_the_run_once(drt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t2")
    failed = await chain(counted(agents, 4), store_url).run("x")
    assert failed.status is TaskStatus.FAILED
    agents.failing.clear()

    reached, go = anyio.Event(), anyio.Event()
    calls: dict[str, int] = {}
    steps = [*counted(agents, 2), Task(name="t2", agent=hanging("t2", reached, go, calls)),
             Task(name="t3", agent=agents["t3"])]
    outcomes: list[Any] = []

    async def resume() -> None:
        try:
            outcomes.append(await chain(steps, store_url).resume_from(failed.run_id))
        except RunOwnedError as exc:
            outcomes.append(exc)
            go.set()  # the loser is refused before the winner's task finishes

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(resume)
            tg.start_soon(resume)
    refused = [o for o in outcomes if isinstance(o, RunOwnedError)]
    results = [o for o in outcomes if not isinstance(o, RunOwnedError)]
    assert len(refused) == 1 and len(results) == 1
    assert results[0].ok and results[0].output == "x>t0>t1>t2>t3"
    assert calls == {"t2": 1}
    assert agents.calls == {"t0": 1, "t1": 1, "t2": 1, "t3": 1}  # t2's one call is the failed first run


async def test_wait_true_waits_for_the_owner_and_then_continues_from_its_checkpoints(
        drt: Runtime, store_url: str) -> None:
    reached, go = anyio.Event(), anyio.Event()
    calls: dict[str, int] = {}
    agents = Agents()
    first = chain([Task(name="t0", agent=hanging("t0", reached, go, calls)), Task(name="t1", agent=agents["t1"])],
                  store_url)
    later = chain([Task(name="t0", agent=agents["t0"]), Task(name="t1", agent=agents["t1"])], store_url)
    results: dict[str, Any] = {}

    async def wait_for_it() -> None:
        results["waiter"] = await later.resume_from("r1", wait=True, wait_timeout=5)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _into(results, "first", first.run("in", run_id="r1")))
            await reached.wait()
            tg.start_soon(wait_for_it)
            await anyio.sleep(0.3)  # the waiter polls meanwhile
            assert "waiter" not in results
            go.set()
    assert results["first"].ok and results["waiter"].ok
    assert results["waiter"].output == "in>t0>t1"
    assert [n for n, t in results["waiter"].tasks.items() if t.reused] == ["t0", "t1"]
    assert calls == {"t0": 1} and agents.calls == {"t1": 1}


async def _into(box: dict[str, Any], key: str, awaitable: Any) -> None:
    box[key] = await awaitable


async def test_wait_gives_up_after_wait_timeout(drt: Runtime, store_url: str) -> None:
    reached = anyio.Event()
    first = chain([Task(name="t0", agent=hanging("t0", reached))], store_url)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: first.run("in", run_id="r1"))
            await reached.wait()
            started = anyio.current_time()
            with pytest.raises(RunOwnedError, match=r"waited 0\.\d s for the claim"):
                await first.resume_from("r1", wait=True, wait_timeout=0.3)
            assert 0.3 <= anyio.current_time() - started < 2
            tg.cancel_scope.cancel()


async def test_the_owner_renews_its_lease_while_the_run_goes_on(mini_runtime: Runtime, store_url: str) -> None:
    """Real time: a 0.6 s lease renewed every 0.1 s outlives a task that takes 1.2 s."""
    reached = anyio.Event()

    async def slow(x: Any) -> str:
        reached.set()
        await anyio.sleep(1.2)
        return "done"

    wf = chain([Task(name="slow", agent=slow)], store_url, lease_seconds=0.6, lease_renew_seconds=0.1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: wf.run("in", run_id="long"))
            await reached.wait()
            claimed = (await lease_of(store_url, "long")).expires_at
            await anyio.sleep(0.9)  # past the first expiry: renewed meanwhile
            lease = await lease_of(store_url, "long")
            assert lease.expires_at > claimed + 0.5
            with pytest.raises(RunOwnedError):
                await wf.resume_from("long")
    assert await lease_of(store_url, "long") is None  # released when the run ended


async def test_a_run_whose_lease_was_taken_over_stops_and_cannot_write(drt: Runtime, store_url: str) -> None:
    """The first owner froze (it did not renew within its lease); a resume took the run over.
    When the first owner's keeper next renews, it finds the lease gone and stops its run."""
    reached = anyio.Event()
    agents = Agents()
    frozen = chain([*counted(agents, 1), Task(name="t1", agent=hanging("t1", reached)), *counted(agents, 3)[2:]],
                   store_url, lease_seconds=15, lease_renew_seconds=0.05)
    fresh = Agents()
    taker = chain(counted(fresh, 3), store_url)
    box: dict[str, Any] = {}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _into(box, "frozen", frozen.run("in", run_id="r1")))
            await reached.wait()
            drt.clock.advance(16)  # the manual clock jumps past the lease: as if the owner froze
            box["taker"] = await taker.resume_from("r1")
    assert box["taker"].ok and box["taker"].output == "in>t0>t1>t2"
    assert fresh.calls == {"t1": 1, "t2": 1} and agents.calls == {"t0": 1}
    stopped = box["frozen"]
    assert stopped.status is TaskStatus.CANCELLED
    assert isinstance(stopped.exception, RunOwnedError)
    assert "was taken over" in (stopped.error or "") and "stopped running it" in (stopped.error or "")
    stored = await MemoryStore(store_url).load("r1")
    assert stored is not None and stored.header.status == "completed"


async def test_a_run_whose_next_write_is_refused_after_a_takeover_stops_as_cancelled(
        drt: Runtime, store_url: str) -> None:
    """The first owner froze in a task past its lease and a resume took the run over; the task
    then finishes before the keeper renews. Its checkpoint is refused (fenced): the run stops
    there, as when the keeper notices, cancelled with RunOwnedError, and runs nothing more."""
    reached, release = anyio.Event(), anyio.Event()
    agents = Agents()
    frozen = chain([*counted(agents, 1), Task(name="t1", agent=hanging("t1", reached, release)),
                    *counted(agents, 3)[2:]], store_url, lease_seconds=15, lease_renew_seconds=5)
    fresh = Agents()
    taker = chain(counted(fresh, 3), store_url)
    box: dict[str, Any] = {}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _into(box, "frozen", frozen.run("in", run_id="r1")))
            await reached.wait()
            drt.clock.advance(16)  # past the lease, long before the keeper's next renewal
            box["taker"] = await taker.resume_from("r1")
            release.set()
    assert box["taker"].ok and box["taker"].output == "in>t0>t1>t2"
    stopped = box["frozen"]
    assert stopped.status is TaskStatus.CANCELLED, stopped.error
    assert isinstance(stopped.exception, RunOwnedError)
    assert agents.calls == {"t0": 1}  # t2 was not run by the process that lost the run
    assert not stopped.errors  # no final checkpoint or header was attempted: the run is not its own
    stored = await MemoryStore(store_url).load("r1")
    assert stored is not None and stored.header.status == "completed"


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
async def test_the_lease_is_released_however_the_run_ends(drt: Runtime, store_url: str, outcome: str) -> None:
    agents = Agents()
    if outcome == "failed":
        agents.failing.add("t1")
    reached = anyio.Event()
    steps = counted(agents, 2) if outcome != "cancelled" else [Task(name="t0", agent=hanging("t0", reached))]
    wf = chain(steps, store_url)
    if outcome == "cancelled":
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: wf.run("x", run_id="r1"))
                await reached.wait()
                assert (await lease_of(store_url, "r1")) is not None
                tg.cancel_scope.cancel()
    else:
        result = await wf.run("x", run_id="r1")
        assert result.status.value == outcome
    assert await lease_of(store_url, "r1") is None
    assert (await MemoryStore(store_url).load("r1")).header.status == outcome  # type: ignore[union-attr]


async def test_history_only_runs_are_owned_too(drt: Runtime, store_url: str) -> None:
    reached = anyio.Event()
    orchestrator = Orchestrator(store=store_url)
    wf = Workflow(name="Audited", steps=[Task(name="t0", agent=hanging("t0", reached))])
    orchestrator.add_workflow(wf)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: orchestrator.run_workflow("Audited", run_id="a1"))
            await reached.wait()
            with pytest.raises(RunOwnedError):
                await orchestrator.run_workflow("Audited", run_id="a1")
            tg.cancel_scope.cancel()


async def test_the_owner_id_can_be_set_for_the_process(drt: Runtime, store_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYAGENT_OWNER_ID", "replica-7")
    reached = anyio.Event()
    wf = chain([Task(name="t0", agent=hanging("t0", reached))], store_url)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: wf.run("x", run_id="r1"))
            await reached.wait()
            assert (await lease_of(store_url, "r1")).owner == "replica-7"
            assert [lease.run_id for lease in await MemoryStore(store_url).list_leases(owner="replica-7")] == ["r1"]
            tg.cancel_scope.cancel()
    monkeypatch.delenv("PYAGENT_OWNER_ID")
    from pyagent import config

    config.configure(owner_id="bad\x00id")
    with pytest.raises(ConfigurationError, match=r"owner id .* NUL"):
        owner_id()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _plant_lease(url: str, run_id: str, owner: str) -> None:
    store = MemoryStore(url)
    await store.claim_run(run_id, owner, "their-token", now=0.0, ttl=4e9)  # not before 2096


@pytest.mark.skipif(_machine_key() is None, reason="process liveness is only known on Linux")
async def test_a_dead_owner_on_this_machine_is_taken_over_at_once(drt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t1")
    failed = await chain(counted(agents, 2), store_url).run("x")
    agents.failing.clear()
    key = _machine_key()
    here, pid = socket.gethostname(), _dead_pid()
    await _plant_lease(store_url, failed.run_id, f"{here}:{pid}:{key}0123abcd")
    result = await chain(counted(agents, 2), store_url).resume_from(failed.run_id)
    assert result.ok and agents.calls == {"t0": 1, "t1": 2}


@pytest.mark.skipif(_machine_key() is None, reason="process liveness is only known on Linux")
async def test_a_killed_owner_its_parent_has_not_reaped_yet_is_taken_over_at_once(
        drt: Runtime, store_url: str) -> None:
    """A process that ran a run as a child, killed it and resumes before waiting for it: the
    child is a zombie (dead, its pid still taken until it is reaped), not an owner at work."""
    agents = Agents()
    agents.failing.add("t1")
    failed = await chain(counted(agents, 2), store_url).run("x")
    agents.failing.clear()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        with anyio.fail_after(10):
            while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                await anyio.sleep(0.01)
        await _plant_lease(store_url, failed.run_id, f"{socket.gethostname()}:{child.pid}:{_machine_key()}0123abcd")
        result = await chain(counted(agents, 2), store_url).resume_from(failed.run_id)
    finally:
        child.wait()
    assert result.ok and agents.calls == {"t0": 1, "t1": 2}


@pytest.mark.parametrize("who", ["another-host", "alive", "another-namespace", "set-by-hand"])
async def test_an_owner_not_known_to_be_dead_is_waited_for(drt: Runtime, store_url: str, who: str) -> None:
    key = _machine_key() or "abcdef"
    here = socket.gethostname()
    owner = {
        "another-host": f"not-{here}:{_dead_pid()}:{key}0123abcd",
        "alive": f"{here}:{os.getppid()}:{key}0123abcd",
        "another-namespace": f"{here}:{_dead_pid()}:{'0' * 6 if key != '0' * 6 else '1' * 6}0123abcd",
        "set-by-hand": "replica-3",
    }[who]
    agents = Agents()
    agents.failing.add("t1")
    failed = await chain(counted(agents, 2), store_url).run("x")
    await _plant_lease(store_url, failed.run_id, owner)
    with pytest.raises(RunOwnedError, match=f"owned by {owner}"):
        await chain(counted(agents, 2), store_url).resume_from(failed.run_id)
    assert agents.calls == {"t0": 1, "t1": 1}


def test_lease_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match=r"lease_renew_seconds .* must be shorter than lease_seconds"):
        Workflow(name="w", checkpointing={"lease_seconds": 5, "lease_renew_seconds": 5})
    with pytest.raises(ValidationError, match="lease_seconds"):
        Workflow(name="w", checkpointing={"lease_seconds": 0})
    cfg = Workflow(name="w", checkpointing={"lease_seconds": 30}).checkpointing
    assert cfg is not None and cfg.renew_every == 10


def test_run_owned_error_is_public_and_survives_pickling() -> None:
    import pyagent
    import pyagent.plugin

    assert pyagent.RunOwnedError is RunOwnedError is pyagent.plugin.RunOwnedError
    err = RunOwnedError("run 'r' is owned by h:1:x", run_id="r", owner="h:1:x", expires_at=12.5)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.run_id, back.owner, back.expires_at) == (str(err), "r", "h:1:x", 12.5)
