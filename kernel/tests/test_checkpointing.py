"""Checkpointing to the in-memory store: deltas, retention, intervals, resume by run id, encryption."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import (
    ConfigurationError,
    PluginNotInstalledError,
    StateError,
    Task,
    Workflow,
    hookimpl,
)
from pyagent._defaults.memory_store import MemoryStore
from pyagent.errors import DriverLoadFailure, StoreError
from pyagent.model.events import Event
from pyagent.model.policies import CheckpointConfig
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents


@pytest.fixture
def rt(drt: Runtime) -> Runtime:
    return drt


def chain(agents: Agents, url: str, n: int = 5, name: str = "Long Running Process", **cp: Any) -> Workflow:
    return Workflow(name=name, steps=[Task(name=f"t{i}", agent=agents[f"t{i}"]) for i in range(n)],
                    checkpointing={"enabled": True, "interval": "after_each_task", "storage": url, **cp})


async def stored(url: str, run_id: str) -> Any:
    store = MemoryStore(url)
    return await store.load(run_id)


def all_checkpoints(url: str, run_id: str) -> list[Any]:
    return list(MemoryStore(url)._checkpoints.get(run_id, []))


# -- settings ---------------------------------------------------------------------------------


def test_seed_6_2_checkpointing_settings_as_written() -> None:
    workflow = Workflow(
        name="Long Running Process",
        checkpointing={
            "enabled": True,
            "interval": "after_each_task",  # or "every_5_minutes"
            "storage": "sqlite://checkpoints.db"
        }
    )
    assert workflow.checkpointing is not None and workflow.checkpointing.interval_seconds is None
    assert CheckpointConfig(interval="every_5_minutes").interval_seconds == 300
    assert CheckpointConfig(interval=90).interval_seconds == 90


@pytest.mark.parametrize(("bad", "field"), [
    ({"interval": "hourly"}, "every_5_minutes"), ({"interval": -1}, "interval"),
    ({"retention": 0}, "retention"), ({"storage": "checkpoints.db"}, "not a URL"),
    ({"storag": "memory://"}, "storag"),
])
def test_bad_checkpoint_settings_are_clear_errors(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Workflow(name="w", checkpointing=bad)


@pytest.mark.anyio
async def test_unknown_storage_scheme_fails_before_any_agent_runs(rt: Runtime) -> None:
    agents = Agents()
    wf = chain(agents, "nosuchdb://x")
    with pytest.raises(PluginNotInstalledError, match=r"unknown store .nosuchdb.: no store of that name is installed.*memory"):
        await wf.run()
    assert agents.calls == {}


@pytest.mark.anyio
async def test_sqlite_without_the_sql_plugin_names_the_distribution(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("pyagent_sql") is not None:
        # The plugin is installed in this environment: hide its entry points as a fresh kernel would.
        from stevedore import driver
        from stevedore.exception import NoMatches

        real = driver.DriverManager

        def no_driver(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("name") == "sqlite":
                raise NoMatches("no sqlite driver")
            return real(*args, **kwargs)

        monkeypatch.setattr(driver, "DriverManager", no_driver)
    agents = Agents()
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-sql"):
        await chain(agents, "sqlite://checkpoints.db").run()
    assert agents.calls == {}


class Unreachable:
    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        raise ConnectionRefusedError("connection refused by 127.0.0.1:1")


class UnreachablePlugin:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("downdb", Unreachable)


@pytest.mark.anyio
async def test_unreachable_store_is_a_clear_error_and_nothing_runs(rt: Runtime) -> None:
    rt.register(UnreachablePlugin(), "unreachable")
    agents = Agents()
    with pytest.raises(DriverLoadFailure, match=r"checkpointing.storage 'downdb://u:\*\*\*@h/db' could not be opened"):
        await chain(agents, "downdb://u:secret@h/db").run()
    assert agents.calls == {}


# -- writing ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_full_checkpoint_then_one_delta_per_task(rt: Runtime, store_url: str) -> None:
    wf = chain(Agents(), store_url)
    events: list[Event] = []
    result = await wf.run("in", on_event=events.append)
    assert result.ok
    cps = all_checkpoints(store_url, result.run_id)
    assert [c.kind for c in cps] == ["full"] + ["delta"] * 6  # a delta per task, then the final status
    assert [c.seq for c in cps] == list(range(7))
    saved = [e for e in events if e.kind == "checkpoint.saved"]
    assert [e.data["tasks"] for e in saved] == [0, 1, 1, 1, 1, 1, 0]
    run = await stored(store_url, result.run_id)
    assert run.header.status == "completed" and run.header.workflow == "Long Running Process"


@pytest.mark.anyio
async def test_storage_grows_linearly_with_tasks(rt: Runtime, store_url: str) -> None:
    sizes = {}
    for n in (50, 100, 200):
        wf = Workflow(name=f"w{n}", steps=[Task(name=f"t{i:03}", agent=lambda x: {"summary": "s" * 40})
                                           for i in range(n)], checkpointing={"storage": store_url})
        result = await wf.run("x")
        sizes[n] = sum(len(c.payload) for c in all_checkpoints(store_url, result.run_id))
    # Twice the tasks, about twice the bytes (a quadratic store would be ~4x).
    assert 1.8 < sizes[100] / sizes[50] < 2.2
    assert 1.8 < sizes[200] / sizes[100] < 2.2
    assert sizes[200] / 200 < 600  # bytes per task


@pytest.mark.anyio
async def test_retention_keeps_a_bounded_number_of_checkpoints_and_resume_still_works(
        rt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t19")
    wf = chain(agents, store_url, n=20, retention=3)
    first = await wf.run("x")
    assert first.status is TaskStatus.FAILED
    cps = all_checkpoints(store_url, first.run_id)
    assert 3 <= len(cps) <= 7
    agents.failing.clear()
    result = await wf.resume_from(first.run_id)
    assert result.ok
    assert agents.calls["t0"] == 1 and agents.calls["t18"] == 1 and agents.calls["t19"] == 2


@pytest.mark.anyio
async def test_time_interval_checkpoints_at_task_boundaries_once_due(rt: Runtime, store_url: str) -> None:
    def slow(name: str) -> Any:
        def fn(x: Any) -> str:
            rt.clock.advance(25)  # type: ignore[attr-defined]
            return name

        fn.__name__ = name
        return fn

    wf = Workflow(name="timed", steps=[Task(name=f"t{i}", agent=slow(f"t{i}")) for i in range(6)],
                  checkpointing={"interval": 60, "storage": store_url})
    result = await wf.run()
    cps = all_checkpoints(store_url, result.run_id)
    assert [c.kind for c in cps] == ["full", "delta", "delta", "delta"]


@pytest.mark.anyio
async def test_a_non_json_output_fails_the_checkpointed_run_naming_the_task(rt: Runtime, store_url: str) -> None:
    wf = Workflow(name="w", steps=[Task(name="Build", agent=lambda x: object())],
                  checkpointing={"storage": store_url})
    result = await wf.run()
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, StateError)
    assert "output of task 'Build'" in (result.error or "")


@pytest.mark.anyio
async def test_a_non_json_input_is_refused_before_anything_is_written(rt: Runtime, store_url: str) -> None:
    agents = Agents()
    with pytest.raises(StateError, match="input"):
        await chain(agents, store_url).run(object())
    assert agents.calls == {} and MemoryStore(store_url)._runs == {}


@pytest.mark.anyio
async def test_disabled_checkpointing_writes_nothing(rt: Runtime, store_url: str) -> None:
    result = await chain(Agents(), store_url, enabled=False).run()
    assert result.ok and MemoryStore(store_url)._runs == {}


# -- resuming ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_crashed_run_resumes_by_run_id_without_rerunning_completed_tasks(rt: Runtime, store_url: str) -> None:
    """The first run hangs in t2. While its owner holds the run's lease a resume is refused;
    once the lease expired (its owner stopped renewing it, as a dead or frozen process does) a
    fresh definition takes the run over and finishes it, and the old owner can no longer write."""
    from pyagent import RunOwnedError
    from pyagent.durability.ownership import owner_id

    hang = anyio.Event()
    reached = anyio.Event()
    first_agents = Agents()

    async def t2_hangs(x: Any) -> Any:
        reached.set()
        await hang.wait()

    steps = [Task(name="t0", agent=first_agents["t0"]), Task(name="t1", agent=first_agents["t1"]),
             Task(name="t2", agent=t2_hangs), Task(name="t3", agent=first_agents["t3"])]
    crashed = Workflow(name="Long Running Process", steps=steps, checkpointing={"storage": store_url})
    run_id = "run-that-crashed"
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: crashed.run("in", run_id=run_id))
            await reached.wait()
            run = await stored(store_url, run_id)
            assert run.header.status == "running"

            # "A new process": the same definition, fresh agents, resumed from the store.
            fresh = Agents()
            again = chain(fresh, store_url, n=4)
            with pytest.raises(RunOwnedError, match=r"run-that-crashed.*is owned by .*wait=True") as owned:
                await again.resume_from(run_id)
            assert owned.value.owner == owner_id() and fresh.calls == {}
            rt.clock.advance(16)  # past the 15 s lease: the first run's owner never renewed it
            result = await again.resume_from(run_id)
            tg.cancel_scope.cancel()
    assert result.ok and result.output == "in>t0>t1>t2>t3"
    assert fresh.calls == {"t2": 1, "t3": 1}
    assert result.run_id == run_id
    assert [n for n, t in result.tasks.items() if t.reused] == ["t0", "t1"]
    # The first run, cancelled after the takeover, could not overwrite the finished run.
    assert (await stored(store_url, run_id)).header.status == "completed"


@pytest.mark.anyio
async def test_a_resumed_run_keeps_checkpointing_and_can_resume_again(rt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t2")
    wf = chain(agents, store_url)
    first = await wf.run("x")
    agents.failing = {"t4"}
    second = await wf.resume_from(first.run_id)
    assert second.status is TaskStatus.FAILED
    agents.failing = set()
    third = await wf.resume_from(first.run_id)
    assert third.ok
    assert agents.calls == {"t0": 1, "t1": 1, "t2": 2, "t3": 1, "t4": 2}
    seqs = [c.seq for c in all_checkpoints(store_url, first.run_id)]
    assert seqs == sorted(set(seqs))


def _disk_image(url: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    store = MemoryStore(url)
    return dict(store._runs), {k: list(v) for k, v in store._checkpoints.items()}


def _restore(url: str, image: tuple[dict[str, Any], dict[str, list[Any]]]) -> None:
    store = MemoryStore(url)
    store._runs.clear()
    store._runs.update(image[0])
    store._checkpoints.clear()
    store._checkpoints.update(image[1])


async def _crash_while(url: str, start: Any, reached: anyio.Event) -> None:
    """Run ``start()`` until ``reached``, then leave the store exactly as a SIGKILL would."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await reached.wait()
            image = _disk_image(url)  # what is stored at the moment of the kill
            tg.cancel_scope.cancel()  # (cancelling writes a final checkpoint; a kill does not)
    _restore(url, image)


@pytest.mark.anyio
@pytest.mark.parametrize("retention", [None, 2])
async def test_a_run_that_crashes_again_after_resuming_loses_no_completed_task(
        rt: Runtime, store_url: str, retention: int | None) -> None:
    calls: dict[str, int] = {}
    hang_in: dict[str, anyio.Event] = {}

    def step(name: str) -> Any:
        async def fn(x: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            if name in hang_in:
                hang_in[name].set()
                await anyio.sleep_forever()
            return f"{x}>{name}"

        fn.__name__ = name
        return fn

    def definition() -> Workflow:
        cp: dict[str, Any] = {"storage": store_url}
        if retention is not None:
            cp["retention"] = retention
        return Workflow(name="Long Running Process", checkpointing=cp,
                        steps=[Task(name=f"t{i}", agent=step(f"t{i}")) for i in range(6)])

    hang_in = {"t2": anyio.Event()}
    await _crash_while(store_url, lambda: definition().run("in", run_id="twice"), hang_in["t2"])
    hang_in = {"t4": anyio.Event()}
    await _crash_while(store_url, lambda: definition().resume_from("twice"), hang_in["t4"])
    hang_in = {}
    result = await definition().resume_from("twice")
    assert result.ok and result.output == "in>t0>t1>t2>t3>t4>t5"
    # t2 and t4 were in flight at a kill, so they ran twice; every other task ran once.
    assert calls == {"t0": 1, "t1": 1, "t2": 2, "t3": 1, "t4": 2, "t5": 1}
    assert [n for n, t in result.tasks.items() if t.reused] == ["t0", "t1", "t2", "t3"]


@pytest.mark.anyio
async def test_resume_errors_for_unknown_runs_and_other_workflows(rt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t1")
    wf = chain(agents, store_url)
    first = await wf.run()
    with pytest.raises(StateError, match="no run 'missing'"):
        await wf.resume_from("missing")
    other = chain(agents, store_url, name="Other")
    with pytest.raises(StateError, match="belongs to workflow 'Long Running Process', not 'Other'"):
        await other.resume_from(first.run_id)
    plain = Workflow(name="Long Running Process", steps=[Task(name="t0", agent=agents["t0"])])
    result = await plain.resume_from(first.run_id, storage=store_url)  # explicit storage
    assert result.ok and agents.calls["t0"] == 1


@pytest.mark.anyio
async def test_ctx_state_is_checkpointed_as_changes(rt: Runtime, store_url: str) -> None:
    fail = {"on": True}

    def counting(x: Any, ctx: Any) -> int:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        ctx.state.pop("temp", None)
        return x + 1

    def starts(x: Any, ctx: Any) -> int:
        ctx.state["temp"] = "drop me"
        return x

    def last(x: Any, ctx: Any) -> Any:
        if fail["on"]:
            raise RuntimeError("later")
        return dict(ctx.state)

    wf = Workflow(name="s", steps=[Task(name="a", agent=starts), Task(name="b", agent=counting),
                                   Task(name="c", agent=counting), Task(name="d", agent=last)],
                  checkpointing={"storage": store_url})
    first = await wf.run(0)
    fail["on"] = False
    result = await wf.resume_from(first.run_id)
    assert result.output == {"seen": 2}


@pytest.mark.anyio
async def test_ctx_state_keys_that_are_not_strings_are_checkpointed_as_they_are(
        rt: Runtime, store_url: str) -> None:
    fail = {"on": True}

    def first(x: Any, ctx: Any) -> int:
        ctx.state[7] = "int key"
        ctx.state[("region", 2)] = "tuple key"
        ctx.state["__pyagent__"] = "looks like a tag"
        return 1

    def second(x: Any, ctx: Any) -> int:
        ctx.state[("region", 2)] = "changed"
        del ctx.state[7]
        ctx.state[frozenset({"a"})] = "added"
        return 2

    def third(x: Any, ctx: Any) -> Any:
        if fail["on"]:
            raise RuntimeError("later")
        return dict(ctx.state)

    wf = Workflow(name="keys", steps=[Task(name="a", agent=first), Task(name="b", agent=second),
                                      Task(name="c", agent=third)],
                  checkpointing={"storage": store_url})
    first_run = await wf.run()
    assert first_run.status is TaskStatus.FAILED and "later" in (first_run.error or "")
    assert first_run.errors.keys() == {"c"}  # every checkpoint was written
    fail["on"] = False
    result = await wf.resume_from(first_run.run_id)
    assert result.ok
    assert result.output == {("region", 2): "changed", "__pyagent__": "looks like a tag",
                             frozenset({"a"}): "added"}
    assert [n for n, t in result.tasks.items() if t.reused] == ["a", "b"]


class GatedStore(MemoryStore):
    """A memory store whose checkpoint writes for one task wait until the test lets them go."""

    hold_task = "slow-write"
    reached: anyio.Event | None = None

    async def append_checkpoint(self, checkpoint: Any, **kw: Any) -> None:
        reached = GatedStore.reached
        record = f'"name":"{self.hold_task}"'.encode()
        if reached is not None and not reached.is_set() and record in checkpoint.payload:
            reached.set()
            await anyio.sleep_forever()  # the first write with that task: until cancelled
        await super().append_checkpoint(checkpoint, **kw)


class GatedStorePlugin:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("gated", GatedStore)


@pytest.mark.anyio
async def test_a_task_whose_checkpoint_write_was_cancelled_is_in_the_final_checkpoint(rt: Runtime) -> None:
    """In a parallel run a sibling's failure cancels a task that completed while its checkpoint
    was being written; the run's final checkpoint must still record that task."""
    import uuid

    rt.register(GatedStorePlugin(), "gated")
    url = f"gated://{uuid.uuid4().hex}"
    GatedStore.reached = anyio.Event()
    calls: dict[str, int] = {}

    def counted(name: str, fail: bool = False) -> Any:
        async def fn(x: Any) -> str:
            calls[name] = calls.get(name, 0) + 1
            if fail:
                await GatedStore.reached.wait()  # type: ignore[union-attr]
                raise RuntimeError("sibling failed")
            return name

        fn.__name__ = name.replace("-", "_")
        return fn

    def fan(fail: bool) -> Workflow:
        return Workflow(name="fan", pattern="fan", checkpointing={"storage": url},
                        steps=[Task(name="slow-write", agent=counted("slow-write")),
                               Task(name="breaks", agent=counted("breaks", fail))])

    with anyio.fail_after(5):
        first = await fan(True).run("x")
    assert first.status is TaskStatus.FAILED
    assert first.tasks["slow-write"].status is TaskStatus.COMPLETED
    assert first.errors.keys() == {"breaks"}  # the final checkpoint was written
    GatedStore.reached = None
    result = await fan(False).resume_from(first.run_id)
    assert result.ok
    assert [n for n, t in result.tasks.items() if t.reused] == ["slow-write"]
    assert calls == {"slow-write": 1, "breaks": 2}


@pytest.mark.anyio
@pytest.mark.parametrize("damage", [
    lambda body: {**body, "tasks": [{"status": "completed"}]},  # a record without a name
    lambda body: {**body, "tasks": 5},
    lambda body: {k: v for k, v in body.items() if k != "kind"},
    lambda body: {**body, "shared_set": ["not", "a", "mapping"]},
    lambda body: {**body, "tasks": [{**body["tasks"][0], "output": {"__pyagent__": "decimal", "value": "x"}}]},
    lambda body: {**body, "tasks": [{**body["tasks"][0], "status": "exploded"}]},
], ids=["no-name", "tasks-not-a-list", "no-kind", "shared-not-a-dict", "bad-decimal", "bad-status"])
async def test_a_damaged_checkpoint_is_a_state_error_and_nothing_runs(
        rt: Runtime, store_url: str, damage: Any) -> None:
    import json

    from pyagent.durability.codec import seal, unseal
    from pyagent.durability.store import Checkpoint

    agents = Agents()
    agents.failing.add("t2")
    wf = chain(agents, store_url)
    first = await wf.run("x")
    cps = MemoryStore(store_url)._checkpoints[first.run_id]
    body = json.loads(unseal(cps[1].payload, "checkpoint 1"))
    assert body["kind"] == "delta" and body["tasks"][0]["name"] == "t0"
    cps[1] = Checkpoint(first.run_id, cps[1].seq, "delta", seal(json.dumps(damage(body)).encode()))
    calls = dict(agents.calls)
    with pytest.raises(StateError, match=r"checkpoint 1"):
        await wf.resume_from(first.run_id)
    assert agents.calls == calls


# -- encryption -------------------------------------------------------------------------------


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    from cryptography.fernet import Fernet

    k = Fernet.generate_key().decode()
    monkeypatch.setenv("PYAGENT_STATE_KEY", k)
    return k


@pytest.mark.anyio
async def test_encrypted_checkpoints_hide_outputs_and_resume_with_the_key(
        rt: Runtime, store_url: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    agents = Agents()
    agents.failing.add("t3")
    wf = chain(agents, store_url)
    first = await wf.run("top-secret")
    blobs = [c.payload for c in all_checkpoints(store_url, first.run_id)]
    blobs.append((await stored(store_url, first.run_id)).header.payload)
    assert blobs and not any(b"top-secret" in b or b">t0" in b for b in blobs)

    from cryptography.fernet import Fernet

    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    with pytest.raises(StateError, match="not the key it was saved with"):
        await wf.resume_from(first.run_id)
    monkeypatch.delenv("PYAGENT_STATE_KEY")
    with pytest.raises(StateError, match="is encrypted: set PYAGENT_STATE_KEY"):
        await wf.resume_from(first.run_id)
    # Rotation: a new key first, the old one still decrypts.
    monkeypatch.setenv("PYAGENT_STATE_KEY", f"{Fernet.generate_key().decode()},{key}")
    agents.failing.clear()
    assert (await wf.resume_from(first.run_id)).ok
    assert agents.calls["t0"] == 1


def test_encrypted_state_file(rt: Runtime, tmp_path: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: "classified")])
    wf.run_sync()
    path = wf.get_state().save(tmp_path / "s.json")
    assert b"classified" not in path.read_bytes()
    assert wf.get_state().__class__.load(path).results == {"a": "classified"}
    from cryptography.fernet import Fernet

    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    with pytest.raises(StateError, match="could not be decrypted"):
        wf.resume_from(path)


def test_invalid_key_and_missing_cryptography_are_configuration_errors(
        rt: Runtime, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: "v")])
    wf.run_sync()
    monkeypatch.setenv("PYAGENT_STATE_KEY", "not-a-key")
    with pytest.raises(ConfigurationError, match=r"not a valid Fernet key.*generate_key"):
        wf.get_state().save(tmp_path / "s.json")
    monkeypatch.setenv("PYAGENT_STATE_KEY", "another-value-so-the-cache-misses")
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'pyagent-kernel\[encryption\]'"):
        wf.get_state().save(tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.anyio
async def test_memory_store_refuses_a_duplicate_checkpoint_like_every_store() -> None:
    import uuid

    from pyagent import CheckpointConflictError
    from pyagent._defaults.memory_store import MemoryStore
    from pyagent.durability.store import Checkpoint

    store = MemoryStore(f"memory://conflict-{uuid.uuid4().hex}")
    await store.append_checkpoint(Checkpoint("r1", 0, "full", b"a"))
    with pytest.raises(CheckpointConflictError, match="checkpoint 0 of run 'r1' is already stored"):
        await store.append_checkpoint(Checkpoint("r1", 0, "delta", b"b"))
    loaded = await store.load("r1")
    assert loaded is None or [c.payload for c in loaded.checkpoints] == [b"a"]


def test_unknown_storage_scheme_names_the_setting_and_the_installed_stores(drt: Any) -> None:
    from pyagent import PluginNotInstalledError

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1)],
                  checkpointing={"storage": "redis://cache.local/0"})
    with pytest.raises(PluginNotInstalledError,
                       match=r"checkpointing\.storage='redis://cache\.local/0': unknown store 'redis'.*installed stores: .*memory"):
        anyio.run(wf.run)


# -- the run header and the first checkpoint ---------------------------------------------------


class RecordingStore(MemoryStore):
    """A memory store that notes every write, and can fail the first checkpoint of a run."""

    writes: list[str] = []
    fail_first = False
    fail_last = False

    async def save_run(self, header: Any, **kw: Any) -> None:
        RecordingStore.writes.append(f"header:{header.status}")
        await super().save_run(header, **kw)

    async def append_checkpoint(self, checkpoint: Any, **kw: Any) -> None:
        RecordingStore.writes.append(f"checkpoint:{checkpoint.seq}")
        await super().append_checkpoint(checkpoint, **kw)

    async def begin_run(self, header: Any, checkpoint: Any, **kw: Any) -> None:
        RecordingStore.writes.append(f"begin:{header.status}:{checkpoint.seq}:{checkpoint.kind}")
        if RecordingStore.fail_first:
            raise OSError("disk full")
        await super().begin_run(header, checkpoint, **kw)

    async def end_run(self, header: Any, checkpoint: Any, **kw: Any) -> None:
        RecordingStore.writes.append(f"end:{header.status}:{checkpoint.seq}:release={kw.get('release')}")
        if RecordingStore.fail_last:
            raise OSError("disk full")
        await super().end_run(header, checkpoint, **kw)

    async def release_run(self, run_id: str, token: str) -> bool:
        RecordingStore.writes.append("release")
        return await super().release_run(run_id, token)


class ThreeCallStore(RecordingStore):
    """A store without end_run: a run ends with three calls."""

    end_run = None  # type: ignore[assignment]


class RecordingStorePlugin:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("recording", RecordingStore)
        register("threecalls", ThreeCallStore)


@pytest.mark.anyio
async def test_the_header_and_the_first_checkpoint_are_written_together(rt: Runtime) -> None:
    import uuid

    rt.register(RecordingStorePlugin(), "recording")
    url = f"recording://{uuid.uuid4().hex}"
    RecordingStore.writes, RecordingStore.fail_first = [], False
    agents = Agents()
    result = await chain(agents, url, n=2).run("x")
    assert result.ok
    # The last checkpoint, the header and the lease's release are one write.
    assert RecordingStore.writes == ["begin:running:0:full", "checkpoint:1", "checkpoint:2",
                                     "end:completed:3:release=True"]
    assert await MemoryStore(url).get_lease(result.run_id) is None

    RecordingStore.writes, RecordingStore.fail_first = [], True
    with pytest.raises(StoreError, match=r"starting run 'never' in recording://.* failed: OSError \(its message is withheld"):
        await chain(agents, url, n=2).run("x", run_id="never")
    assert RecordingStore.writes == ["begin:running:0:full", "release"]  # nothing written; the claim given back
    assert await MemoryStore(url).load("never") is None and await MemoryStore(url).get_lease("never") is None
    assert agents.calls == {"t0": 1, "t1": 1}


@pytest.mark.anyio
async def test_a_store_without_end_run_gets_the_last_checkpoint_the_header_and_the_release_apart(
        rt: Runtime) -> None:
    import uuid

    rt.register(RecordingStorePlugin(), "recording")
    url = f"threecalls://{uuid.uuid4().hex}"
    RecordingStore.writes, RecordingStore.fail_first = [], False
    result = await chain(Agents(), url, n=2).run("x")
    assert result.ok
    assert RecordingStore.writes == ["begin:running:0:full", "checkpoint:1", "checkpoint:2", "checkpoint:3",
                                     "header:completed", "release"]
    stored = await MemoryStore(url).load(result.run_id)
    assert stored is not None and stored.header.status == "completed"
    assert await MemoryStore(url).get_lease(result.run_id) is None


@pytest.mark.anyio
async def test_when_the_last_write_fails_the_header_is_saved_alone_and_the_lease_released(rt: Runtime) -> None:
    """end_run writes nothing when it fails: the header is saved on its own (a run never stays
    running in the store after it ended), the failure is listed, and the lease is released."""
    import uuid

    rt.register(RecordingStorePlugin(), "recording")
    url = f"recording://{uuid.uuid4().hex}"
    RecordingStore.writes, RecordingStore.fail_first, RecordingStore.fail_last = [], False, True
    try:
        result = await chain(Agents(), url, n=2).run("x")
    finally:
        RecordingStore.fail_last = False
    assert result.ok and "final checkpoint" in result.errors["checkpoint"]
    assert RecordingStore.writes == ["begin:running:0:full", "checkpoint:1", "checkpoint:2",
                                     "end:completed:3:release=True", "header:completed", "release"]
    stored = await MemoryStore(url).load(result.run_id)
    assert stored is not None and stored.header.status == "completed"
    assert [c.seq for c in stored.checkpoints] == [0, 1, 2]
    assert await MemoryStore(url).get_lease(result.run_id) is None


@pytest.mark.anyio
async def test_a_run_stored_without_any_checkpoint_says_how_to_start_it_again(rt: Runtime, store_url: str) -> None:
    from pyagent.durability.store import RunHeader

    await MemoryStore(store_url).save_run(RunHeader("header-only", "Long Running Process", "running", 1.0))
    agents = Agents()
    with pytest.raises(StateError, match=r"no checkpoints to resume from.*its input was never saved.*"
                                         r"workflow\.run\(input, run_id='header-only'\)"):
        await chain(agents, store_url).resume_from("header-only")
    assert agents.calls == {} and await MemoryStore(store_url).get_lease("header-only") is None
