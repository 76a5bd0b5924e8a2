"""The store protocol, run against the kernel's memory store, SQLite and PostgreSQL alike.

Every store is created the way the kernel creates it: the factory registered under the URL's
scheme in the ``pyagent.stores`` entry-point group, called with the URL.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import anyio
import pytest

from pyagent.durability.store import Checkpoint, RunHeader

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "memory":
        return f"memory://conformance-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def header(run_id: str, workflow: str = "wf", status: str = "running", started: float = 1000.0, **kw: Any) -> RunHeader:
    return RunHeader(run_id=run_id, workflow=workflow, status=status, started_at=started, **kw)


def cp(run_id: str, seq: int, kind: str = "delta", payload: bytes | None = None) -> Checkpoint:
    return Checkpoint(run_id, seq, kind, payload if payload is not None else f"{run_id}:{seq}".encode(), 2000.0 + seq)


async def test_a_fresh_store_is_empty_and_open_is_idempotent(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.open()
        assert await store.load("nope") is None
        assert await store.list_runs() == []
        assert await store.prune("nope", 3) == 0


async def test_a_saved_header_loads_back_and_saving_again_replaces_it(url: str, opened: Any) -> None:
    async with opened(url) as store:
        first = header("r1", payload=b"\x00summary\xff")
        await store.save_run(first)
        loaded = await store.load("r1")
        assert loaded is not None
        assert loaded.header == first
        assert loaded.checkpoints == []

        done = header("r1", status="completed", finished_at=1234.5, payload=b"done")
        await store.save_run(done)
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header == done
        assert [h.run_id for h in await store.list_runs()] == ["r1"]


async def test_load_starts_at_the_latest_full_checkpoint_in_seq_order(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.save_run(header("r1"))
        await store.save_run(header("r2"))
        kinds = ["full", "delta", "delta", "full", "delta", "delta"]
        for seq, kind in enumerate(kinds):
            await store.append_checkpoint(cp("r1", seq, kind))
            await store.append_checkpoint(cp("r2", seq, "delta"))
        loaded = await store.load("r1")
        assert loaded is not None
        assert [(c.seq, c.kind, c.payload) for c in loaded.checkpoints] == [
            (3, "full", b"r1:3"), (4, "delta", b"r1:4"), (5, "delta", b"r1:5"),
        ]
        assert loaded.checkpoints[0] == cp("r1", 3, "full")
        # Without any full checkpoint every delta is returned, and runs never mix.
        other = await store.load("r2")
        assert other is not None
        assert [c.payload for c in other.checkpoints] == [f"r2:{i}".encode() for i in range(6)]


async def test_checkpoints_without_a_header_are_not_a_run(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.append_checkpoint(cp("orphan", 0, "full"))
        assert await store.load("orphan") is None
        await store.save_run(header("orphan"))
        loaded = await store.load("orphan")
        assert loaded is not None and [c.seq for c in loaded.checkpoints] == [0]


async def test_list_runs_filters_by_workflow_status_and_since_newest_first(url: str, opened: Any) -> None:
    async with opened(url) as store:
        rows = [
            ("a1", "alpha", "completed", 100.0),
            ("a2", "alpha", "failed", 200.0),
            ("a3", "alpha", "completed", 300.0),
            ("b1", "beta", "completed", 150.0),
            ("b2", "beta", "running", 250.0),
        ]
        for run_id, wf, status, started in rows:
            await store.save_run(header(run_id, wf, status, started))

        async def ids(**filters: Any) -> list[str]:
            return [h.run_id for h in await store.list_runs(**filters)]

        assert await ids() == ["a3", "b2", "a2", "b1", "a1"]
        assert await ids(workflow="alpha") == ["a3", "a2", "a1"]
        assert await ids(status="completed") == ["a3", "b1", "a1"]
        assert await ids(since=200.0) == ["a3", "b2", "a2"]
        assert await ids(workflow="alpha", status="completed", since=150.0) == ["a3"]
        assert await ids(limit=2) == ["a3", "b2"]
        assert await ids(workflow="beta", limit=1) == ["b2"]
        assert await ids(limit=0) == []
        assert await ids(workflow="gamma") == []
        got = (await store.list_runs(workflow="beta", status="running"))[0]
        assert got == header("b2", "beta", "running", 250.0)


async def test_list_runs_pages_with_offset_and_until_in_a_stable_order(url: str, opened: Any) -> None:
    async with opened(url) as store:
        # Two runs share a start time: the run id breaks the tie, so pages never overlap.
        for run_id, wf, started in [("r1", "alpha", 100.0), ("r2", "beta", 200.0), ("r3", "alpha", 200.0),
                                    ("r4", "alpha", 300.0), ("r5", "beta", 400.0)]:
            await store.save_run(header(run_id, wf, "completed", started))

        async def ids(**filters: Any) -> list[str]:
            return [h.run_id for h in await store.list_runs(**filters)]

        assert await ids() == ["r5", "r4", "r3", "r2", "r1"]
        pages = [await ids(limit=2, offset=o) for o in (0, 2, 4, 6)]
        assert pages == [["r5", "r4"], ["r3", "r2"], ["r1"], []]
        assert await ids(offset=3) == ["r2", "r1"]
        assert await ids(until=300.0) == ["r3", "r2", "r1"]
        assert await ids(since=200.0, until=400.0) == ["r4", "r3", "r2"]
        assert await ids(workflow="alpha", until=300.0, limit=1, offset=1) == ["r1"]


async def test_prune_keeps_the_last_n_and_the_full_checkpoint_they_build_on(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.save_run(header("r1"))
        kinds = ["full", "delta", "delta", "full", "delta", "delta", "delta"]
        for seq, kind in enumerate(kinds):
            await store.append_checkpoint(cp("r1", seq, kind))

        assert await store.prune("r1", 10) == 0
        # Keep 2 (seq 5, 6): they build on the full seq 3 and the delta 4, which stay; 0, 1, 2 go.
        assert await store.prune("r1", 2) == 3
        loaded = await store.load("r1")
        assert loaded is not None
        assert [(c.seq, c.kind) for c in loaded.checkpoints] == [
            (3, "full"), (4, "delta"), (5, "delta"), (6, "delta")]
        assert loaded.checkpoints[0].payload == b"r1:3"
        assert await store.prune("r1", 3) == 0

        # When the kept window starts with a full checkpoint, nothing older is needed.
        await store.append_checkpoint(cp("r1", 7, "full"))
        await store.append_checkpoint(cp("r1", 8, "delta"))
        assert await store.prune("r1", 2) == 4
        loaded = await store.load("r1")
        assert loaded is not None
        assert [(c.seq, c.kind) for c in loaded.checkpoints] == [(7, "full"), (8, "delta")]


async def test_what_prune_keeps_still_loads_without_gaps(url: str, opened: Any) -> None:
    """A delta only means something on top of every checkpoint before it back to its full one:
    whatever prune keeps, load must return a run of consecutive seqs from a full checkpoint."""
    async with opened(url) as store:
        await store.save_run(header("r1"))
        kinds = ["full", "delta", "delta", "full", "delta", "delta", "delta"]
        for seq, kind in enumerate(kinds):
            await store.append_checkpoint(cp("r1", seq, kind))
        for keep in (6, 4, 2, 1):
            await store.prune("r1", keep)
            loaded = await store.load("r1")
            assert loaded is not None
            seqs = [c.seq for c in loaded.checkpoints]
            assert loaded.checkpoints[0].kind == "full"
            assert seqs == list(range(seqs[0], 7)), (keep, seqs)


async def test_prune_touches_only_the_named_run(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for run in ("r1", "r2"):
            await store.save_run(header(run))
            for seq in range(5):
                await store.append_checkpoint(cp(run, seq, "full" if seq == 0 else "delta"))
        # The delta 4 builds on 0-3: with no later full checkpoint, none of them may go.
        assert await store.prune("r1", 1) == 0
        await store.append_checkpoint(cp("r1", 5, "full"))
        assert await store.prune("r1", 1) == 5  # now the full 5 stands alone
        other = await store.load("r2")
        assert other is not None and [c.seq for c in other.checkpoints] == [0, 1, 2, 3, 4]


async def test_concurrent_writers_lose_nothing(url: str, opened: Any) -> None:
    runs, per_run = 8, 25

    async with opened(url) as store:

        async def writer(run: str) -> None:
            await store.save_run(header(run, status="running"))
            for seq in range(per_run):
                await store.append_checkpoint(cp(run, seq, "full" if seq == 0 else "delta"))
            await store.save_run(header(run, status="completed", finished_at=2000.0))

        async with anyio.create_task_group() as tg:
            for i in range(runs):
                tg.start_soon(writer, f"run-{i}")

        headers = await store.list_runs(status="completed")
        assert sorted(h.run_id for h in headers) == sorted(f"run-{i}" for i in range(runs))
        for i in range(runs):
            loaded = await store.load(f"run-{i}")
            assert loaded is not None
            assert [c.seq for c in loaded.checkpoints] == list(range(per_run))


async def test_large_and_binary_payloads_round_trip_exactly(url: str, opened: Any) -> None:
    big = random.Random(7).randbytes(8 * 1024 * 1024)
    every_byte = bytes(range(256)) * 4
    async with opened(url) as store:
        await store.save_run(header("rün-ü", workflow="wörkflow ✓", payload=every_byte))
        await store.append_checkpoint(cp("rün-ü", 0, "full", big))
        await store.append_checkpoint(cp("rün-ü", 1, "delta", b""))
        loaded = await store.load("rün-ü")
        assert loaded is not None
        assert loaded.header.workflow == "wörkflow ✓"
        assert loaded.header.payload == every_byte
        assert loaded.checkpoints[0].payload == big
        assert loaded.checkpoints[1].payload == b""


async def test_what_was_saved_is_there_for_a_new_store_on_the_same_url(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.save_run(header("kept", status="completed"))
        await store.append_checkpoint(cp("kept", 0, "full"))
    async with opened(url) as again:
        loaded = await again.load("kept")
        assert loaded is not None
        assert loaded.header.status == "completed"
        assert [c.payload for c in loaded.checkpoints] == [b"kept:0"]


async def test_a_closed_store_can_be_opened_again(url: str, make_store: Any) -> None:
    store = make_store(url)
    await store.open()
    await store.save_run(header("r1"))
    await store.close()
    await store.close()
    await store.open()
    try:
        assert await store.load("r1") is not None
    finally:
        await store.close()



# -- run ownership: leases ----------------------------------------------------------------------


async def test_a_run_is_claimed_by_one_claim_at_a_time_until_its_lease_expires(url: str, opened: Any) -> None:
    async with opened(url) as store:
        mine = await store.claim_run("r1", "host-a:1:x", "tok-a", now=100.0, ttl=10.0)
        assert (mine.owner, mine.token, mine.claimed_at, mine.expires_at) == ("host-a:1:x", "tok-a", 100.0, 110.0)
        # Another claim before expiry gets the holder's lease back, unchanged.
        theirs = await store.claim_run("r1", "host-b:2:y", "tok-b", now=105.0, ttl=10.0)
        assert theirs == mine
        # Claiming again with the same token is idempotent (a retried claim) and extends it.
        again = await store.claim_run("r1", "host-a:1:x", "tok-a", now=106.0, ttl=10.0)
        assert again.token == "tok-a" and again.expires_at == 116.0
        # Once expired, anyone may take it.
        taken = await store.claim_run("r1", "host-b:2:y", "tok-b", now=116.0, ttl=10.0)
        assert (taken.owner, taken.token, taken.expires_at) == ("host-b:2:y", "tok-b", 126.0)
        assert await store.get_lease("r1") == taken
        assert await store.get_lease("nobody") is None


async def test_a_claim_can_replace_exactly_the_lease_it_names(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.claim_run("r1", "dead", "tok-dead", now=100.0, ttl=60.0)
        wrong = await store.claim_run("r1", "me", "tok-me", now=101.0, ttl=60.0, replace="tok-other")
        assert wrong.token == "tok-dead"
        right = await store.claim_run("r1", "me", "tok-me", now=101.0, ttl=60.0, replace="tok-dead")
        assert (right.owner, right.token) == ("me", "tok-me")


async def test_renewing_and_releasing_work_only_for_the_claim_holding_the_lease(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.claim_run("r1", "a", "tok-a", now=100.0, ttl=10.0)
        assert await store.renew_lease("r1", "tok-a", now=108.0, ttl=10.0)
        lease = await store.get_lease("r1")
        assert lease is not None and lease.expires_at == 118.0 and lease.claimed_at == 100.0
        assert not await store.renew_lease("r1", "tok-b", now=108.0, ttl=10.0)
        # Expired but not claimed by anyone since: still the holder's to renew.
        assert await store.renew_lease("r1", "tok-a", now=500.0, ttl=10.0)
        assert not await store.release_run("r1", "tok-b")
        assert await store.release_run("r1", "tok-a")
        assert await store.get_lease("r1") is None
        assert not await store.release_run("r1", "tok-a")
        assert not await store.renew_lease("r1", "tok-a", now=501.0, ttl=10.0)
        # Released: claimable at once, whatever the time.
        assert (await store.claim_run("r1", "b", "tok-b", now=0.0, ttl=10.0)).token == "tok-b"


async def test_many_simultaneous_claims_have_exactly_one_winner(url: str, opened: Any) -> None:
    async with opened(url) as store:
        won: list[str] = []

        async def claim(i: int) -> None:
            lease = await store.claim_run("contested", f"owner-{i}", f"tok-{i}", now=100.0, ttl=30.0)
            if lease.token == f"tok-{i}":
                won.append(lease.owner)

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(claim, i)
        assert len(won) == 1
        lease = await store.get_lease("contested")
        assert lease is not None and lease.owner == won[0]


async def test_list_leases_by_owner_and_by_expiry(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.claim_run("r1", "a", "t1", now=100.0, ttl=10.0)
        await store.claim_run("r2", "b", "t2", now=100.0, ttl=5.0)
        await store.claim_run("r3", "a", "t3", now=100.0, ttl=50.0)
        assert [x.run_id for x in await store.list_leases()] == ["r2", "r1", "r3"]
        assert [x.run_id for x in await store.list_leases(owner="a")] == ["r1", "r3"]
        assert [x.run_id for x in await store.list_leases(expired_at=110.0)] == ["r2", "r1"]
        assert [x.run_id for x in await store.list_leases(owner="a", expired_at=110.0)] == ["r1"]
        assert [x.run_id for x in await store.list_leases(limit=1)] == ["r2"]


async def test_fenced_writes_are_refused_once_the_lease_passed_to_another_claim(url: str, opened: Any) -> None:
    from pyagent import RunOwnedError

    async with opened(url) as store:
        await store.claim_run("r1", "old", "tok-old", now=100.0, ttl=10.0)
        await store.begin_run(header("r1"), cp("r1", 0, "full"), fence="tok-old")
        await store.append_checkpoint(cp("r1", 1), fence="tok-old")
        await store.save_run(header("r1", status="running", payload=b"old"), fence="tok-old")
        await store.claim_run("r1", "new", "tok-new", now=200.0, ttl=10.0)  # the old one expired
        with pytest.raises(RunOwnedError, match=r"run 'r1' .*no longer owned.*held by new") as refused:
            await store.append_checkpoint(cp("r1", 2), fence="tok-old")
        assert refused.value.owner == "new"
        with pytest.raises(RunOwnedError):
            await store.save_run(header("r1", status="cancelled"), fence="tok-old")
        with pytest.raises(RunOwnedError):
            await store.begin_run(header("r1", status="cancelled"), cp("r1", 5, "full"), fence="tok-old")
        await store.append_checkpoint(cp("r1", 2), fence="tok-new")
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header.payload == b"old"
        assert [c.seq for c in loaded.checkpoints] == [0, 1, 2]
        assert loaded.checkpoints[2].payload == b"r1:2"
        # Released: no claim holds it, so fenced writes are refused too.
        assert await store.release_run("r1", "tok-new")
        with pytest.raises(RunOwnedError, match="released"):
            await store.append_checkpoint(cp("r1", 3), fence="tok-new")


async def test_begin_run_writes_header_and_first_checkpoint_together_or_not_at_all(url: str, opened: Any) -> None:
    from pyagent import CheckpointConflictError

    async with opened(url) as store:
        await store.begin_run(header("r1", payload=b"h1"), cp("r1", 0, "full"))
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header.payload == b"h1"
        assert [(c.seq, c.kind) for c in loaded.checkpoints] == [(0, "full")]
        # The checkpoint cannot be stored (seq taken): the new header is not stored either.
        with pytest.raises(CheckpointConflictError):
            await store.begin_run(header("r1", status="completed", payload=b"h2"), cp("r1", 0, "full"))
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header.payload == b"h1" and loaded.header.status == "running"


async def test_end_run_writes_the_last_checkpoint_the_header_and_the_release_together_or_not_at_all(
        url: str, opened: Any) -> None:
    from pyagent import CheckpointConflictError, RunOwnedError

    async with opened(url) as store:
        await store.claim_run("r1", "me", "tok", now=100.0, ttl=10.0)
        await store.begin_run(header("r1", payload=b"h1"), cp("r1", 0, "full"), fence="tok")
        # The checkpoint cannot be stored (seq taken): neither the header nor the release happen.
        with pytest.raises(CheckpointConflictError):
            await store.end_run(header("r1", status="completed", payload=b"h2"), cp("r1", 0), fence="tok",
                                release=True)
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header.status == "running" and loaded.header.payload == b"h1"
        assert (await store.get_lease("r1")).token == "tok"
        # Under a lease that passed to another claim: refused, nothing written.
        await store.claim_run("r1", "other", "tok-new", now=200.0, ttl=10.0)
        with pytest.raises(RunOwnedError):
            await store.end_run(header("r1", status="completed", payload=b"h2"), cp("r1", 1), fence="tok",
                                release=True)
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header.status == "running" and len(loaded.checkpoints) == 1
        assert (await store.get_lease("r1")).token == "tok-new"
        # The holder ends it: all three at once.
        await store.end_run(header("r1", status="completed", finished_at=300.0, payload=b"h2"),
                            cp("r1", 1, payload=b"last"), fence="tok-new", release=True)
        loaded = await store.load("r1")
        assert loaded is not None and loaded.header == header("r1", status="completed", finished_at=300.0,
                                                               payload=b"h2")
        assert [(c.seq, c.payload) for c in loaded.checkpoints] == [(0, b"r1:0"), (1, b"last")]
        assert await store.get_lease("r1") is None
        # Without release the lease stays; without a fence it is not checked.
        await store.claim_run("r2", "me", "tok2", now=100.0, ttl=10.0)
        await store.end_run(header("r2", status="completed"), cp("r2", 0, "full"), fence="tok2")
        assert (await store.get_lease("r2")).token == "tok2"
        await store.end_run(header("r3", status="completed"), cp("r3", 0, "full"))
        assert (await store.load("r3")) is not None
        with pytest.raises(ValueError, match="needs the fence"):
            await store.end_run(header("r4"), cp("r4", 0, "full"), release=True)


async def test_create_run_inserts_only_a_run_id_that_is_not_there(url: str, opened: Any) -> None:
    async with opened(url) as store:
        first = header("tick@2026-03-02T09:00:00Z", status="pending", payload=b"first")
        assert await store.create_run(first) is True
        assert await store.create_run(header(first.run_id, status="pending", payload=b"second")) is False
        loaded = await store.load(first.run_id)
        assert loaded is not None and loaded.header == first  # the loser changed nothing
        # A header saved the ordinary way counts as existing too, and save_run still replaces.
        await store.save_run(header("saved", status="completed"))
        assert await store.create_run(header("saved", status="pending")) is False
        await store.save_run(header(first.run_id, status="running"))
        loaded = await store.load(first.run_id)
        assert loaded is not None and loaded.header.status == "running"
        assert [h.status for h in await store.list_runs(status="pending")] == []


async def test_concurrent_create_run_of_one_id_has_exactly_one_winner(url: str, opened: Any) -> None:
    async with opened(url) as store, opened(url) as other:
        wins: list[bytes] = []

        async def attempt(target: Any, n: int) -> None:
            mine = f"attempt-{n}".encode()
            if await target.create_run(header("contested", status="pending", payload=mine)):
                wins.append(mine)

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(attempt, store if n % 2 else other, n)
        assert len(wins) == 1
        loaded = await store.load("contested")
        assert loaded is not None and loaded.header.payload == wins[0]


RACE = """
import asyncio, sys, time
from pyagent.durability.store import RunHeader
from pyagent.plugins import get_runtime

url, tag, go_at = sys.argv[1], sys.argv[2], float(sys.argv[3])

async def main():
    store = get_runtime().driver("stores", url.split("://", 1)[0])(url)
    await store.open()
    time.sleep(max(0.0, go_at - time.time()))  # every process starts inserting at once
    won = [i for i in (f"tick-{n}" for n in range(60))
           if await store.create_run(RunHeader(i, "wf", "pending", 1000.0, payload=tag.encode()))]
    await store.close()
    print(" ".join(won))

asyncio.run(main())
"""


def test_processes_racing_on_the_same_run_ids_each_insert_a_disjoint_share(
        request: pytest.FixtureRequest, opened: Any) -> None:
    """What lets several serve processes on one database fire each cron tick exactly once."""
    import os
    import subprocess
    import sys
    import time

    kinds = ["sqlite_url"] + (["pg_url"] if os.environ.get("PYAGENT_TEST_POSTGRES_URL") else [])
    for kind in kinds:
        url = str(request.getfixturevalue(kind))
        go_at = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", RACE, url, tag, str(go_at)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for tag in "abcd"]
        outs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        won = [i for out, _ in outs for i in out.split()]
        ids = [f"tick-{n}" for n in range(60)]
        assert sorted(won) == sorted(ids), kind  # every id inserted exactly once, by one process

        async def stored(url: str = url) -> list[tuple[str, bytes]]:
            async with opened(url) as store:
                return [(h.run_id, h.payload) for h in await store.list_runs(status="pending")]

        rows = anyio.run(stored)
        assert sorted(r for r, _ in rows) == sorted(ids)
        by_winner = {i: tag for tag, (out, _) in zip("abcd", outs, strict=True) for i in out.split()}
        assert all(payload.decode() == by_winner[run_id] for run_id, payload in rows)


# -- interrupts: the questions runs ask people ---------------------------------------------------


def question(run_id: str, task: str = "approve", position: int = 0, level: int = 0, *, id: str | None = None,
             asked_at: float = 100.0, workflow: str = "wf", deadline: float | None = None):  # type: ignore[no-untyped-def]
    from pyagent.durability.store import InterruptRecord

    return InterruptRecord(id=id or uuid.uuid4().hex, run_id=run_id, workflow=workflow, task=task,
                           position=position, level=level, status="pending", asked_at=asked_at,
                           deadline=deadline, payload=f"q:{run_id}:{task}:{position}:{level}".encode() + b"\x00\xff")


async def test_a_question_is_asked_once_per_place_in_its_run_and_read_back(url: str, opened: Any) -> None:
    async with opened(url) as store:
        first = question("r1", id="a" * 32, deadline=500.0)
        stored = await store.ask_interrupt(first)
        assert stored == first
        # Asked again at the same (task, position, level), with a new id: the first row stands.
        again = await store.ask_interrupt(question("r1", id="b" * 32))
        assert again.id == "a" * 32 and again.payload == first.payload and again.deadline == 500.0
        assert await store.get_interrupt("b" * 32) is None
        assert await store.get_interrupt("a" * 32) == first
        # Another position, level, task or run is another question.
        for other in (question("r1", position=1), question("r1", level=1), question("r1", task="t2"),
                      question("r2")):
            assert (await store.ask_interrupt(other)).id == other.id
        assert len(await store.list_interrupts(run_id="r1")) == 4
        assert await store.get_interrupt("nope") is None


async def test_concurrent_asks_of_one_question_leave_one_row(url: str, opened: Any) -> None:
    async with opened(url) as store:
        got: list[str] = []

        async def ask(i: int) -> None:
            got.append((await store.ask_interrupt(question("race", id=f"{i:032d}"))).id)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(ask, i)
        assert len(set(got)) == 1
        assert [r.id for r in await store.list_interrupts(run_id="race")] == [got[0]]


async def test_resolving_a_question_happens_once_and_only_while_it_is_pending(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.ask_interrupt(question("r1", id="q" * 32))
        assert await store.resolve_interrupt("q" * 32, status="answered", answer=b"\x01yes", answered_by="alice",
                                             answered_at=200.0)
        row = await store.get_interrupt("q" * 32)
        assert row is not None
        assert (row.status, row.answer, row.answered_by, row.answered_at) == ("answered", b"\x01yes", "alice", 200.0)
        # A replayed or late answer changes nothing.
        assert not await store.resolve_interrupt("q" * 32, status="answered", answer=b"\x01no", answered_by="mallory",
                                                 answered_at=300.0)
        assert not await store.resolve_interrupt("q" * 32, status="expired", answer=None, answered_by="timeout",
                                                 answered_at=300.0)
        assert await store.get_interrupt("q" * 32) == row
        assert not await store.resolve_interrupt("unknown", status="answered", answer=b"", answered_by=None,
                                                 answered_at=1.0)
        await store.ask_interrupt(question("r1", task="t2", id="e" * 32))
        assert await store.resolve_interrupt("e" * 32, status="escalated", answer=None, answered_by="timeout",
                                             answered_at=250.0)
        escalated = await store.get_interrupt("e" * 32)
        assert escalated is not None and escalated.status == "escalated" and escalated.answer is None


async def test_concurrent_answers_to_one_question_one_wins(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.ask_interrupt(question("r1", id="w" * 32))
        wins: list[str] = []

        async def answer(who: str) -> None:
            if await store.resolve_interrupt("w" * 32, status="answered", answer=who.encode(), answered_by=who,
                                             answered_at=1.0):
                wins.append(who)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(answer, f"p{i}")
        assert len(wins) == 1
        row = await store.get_interrupt("w" * 32)
        assert row is not None and row.answered_by == wins[0] and row.answer == wins[0].encode()


async def test_list_interrupts_filters_and_orders_oldest_first(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.ask_interrupt(question("r1", id="c" * 32, asked_at=300.0))
        await store.ask_interrupt(question("r1", task="b", id="a" * 32, asked_at=100.0))
        await store.ask_interrupt(question("r2", id="b" * 32, asked_at=200.0, workflow="other"))
        await store.ask_interrupt(question("r1", task="b", level=1, id="d" * 32, asked_at=100.0))
        assert [r.id for r in await store.list_interrupts()] == ["a" * 32, "d" * 32, "b" * 32, "c" * 32]
        assert [r.id for r in await store.list_interrupts(run_id="r1")] == ["a" * 32, "d" * 32, "c" * 32]
        assert [r.id for r in await store.list_interrupts(workflow="other")] == ["b" * 32]
        await store.resolve_interrupt("a" * 32, status="answered", answer=b"1", answered_by=None, answered_at=5.0)
        assert [r.id for r in await store.list_interrupts(status="pending")] == ["d" * 32, "b" * 32, "c" * 32]
        assert [r.id for r in await store.list_interrupts(status="answered")] == ["a" * 32]
        assert [r.id for r in await store.list_interrupts(limit=2)] == ["a" * 32, "d" * 32]


async def test_asking_under_a_lost_lease_is_refused_and_writes_nothing(url: str, opened: Any) -> None:
    from pyagent.errors import RunOwnedError

    async with opened(url) as store:
        lease = await store.claim_run("owned", "me", "t1", now=100.0, ttl=10.0)
        assert lease.token == "t1"
        assert (await store.ask_interrupt(question("owned", id="f" * 32), fence="t1")).id == "f" * 32
        await store.claim_run("owned", "other", "t2", now=200.0, ttl=10.0)  # expired: taken over
        with pytest.raises(RunOwnedError):
            await store.ask_interrupt(question("owned", position=1, id="g" * 32), fence="t1")
        assert await store.get_interrupt("g" * 32) is None
        # Answering needs no lease.
        assert await store.resolve_interrupt("f" * 32, status="answered", answer=b"ok", answered_by="bob",
                                             answered_at=201.0)


# -- shared circuit breakers --------------------------------------------------------------------


def breaker(name: str = "wf", version: int = 1, **kw: Any) -> Any:
    from pyagent.durability.store import BreakerRecord

    fields: dict[str, Any] = {"state": "closed", "generation": 0, "failures": 0, "opened_at": None, "trials": 0,
                              "trials_ok": 0, "trial_deadline": None, "times_opened": 0, "updated_at": 1.5}
    return BreakerRecord(name=name, version=version, **{**fields, **kw})


async def test_a_breaker_row_is_inserted_once_then_replaced_only_at_the_version_read(url: str, opened: Any) -> None:
    from pyagent.durability.store import BreakerStore

    async with opened(url) as store:
        assert isinstance(store, BreakerStore)
        assert await store.get_breaker("wf") is None
        first = breaker(failures=1)
        assert await store.swap_breaker(first, expected=0)
        assert not await store.swap_breaker(breaker(failures=9), expected=0)  # there is a row now
        assert await store.get_breaker("wf") == first
        opened_row = breaker(version=2, state="open", generation=1, failures=3, opened_at=10.25, times_opened=1)
        assert not await store.swap_breaker(breaker(version=3, failures=2), expected=2)  # not the version read
        assert await store.swap_breaker(opened_row, expected=1)
        assert await store.get_breaker("wf") == opened_row
        half = breaker(version=3, state="half_open", generation=2, trials=1, trial_deadline=70.5, times_opened=1)
        assert await store.swap_breaker(half, expected=2)
        assert await store.get_breaker("wf") == half
        assert await store.get_breaker("other") is None  # one row per name


async def test_a_breaker_swap_with_a_version_that_does_not_follow_is_refused(url: str, opened: Any) -> None:
    async with opened(url) as store:
        with pytest.raises(ValueError, match="version must be expected \\+ 1"):
            await store.swap_breaker(breaker(version=5), expected=0)
        assert await store.get_breaker("wf") is None


async def test_of_concurrent_breaker_swaps_expecting_one_version_exactly_one_wins(
        url: str, make_store: Any, opened: Any) -> None:
    async with opened(url) as store:
        assert await store.swap_breaker(breaker(), expected=0)
        wins: list[int] = []

        async def swap(i: int) -> None:
            other = make_store(url)  # as another process would: its own store object
            await other.open()
            try:
                if await other.swap_breaker(breaker(version=2, failures=i), expected=1):
                    wins.append(i)
            finally:
                await other.close()

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(swap, i)
        assert len(wins) == 1
        row = await store.get_breaker("wf")
        assert row is not None and row.version == 2 and row.failures == wins[0]


async def test_of_concurrent_first_breaker_rows_exactly_one_is_inserted(url: str, opened: Any) -> None:
    wins: list[int] = []

    async def insert(i: int) -> None:
        async with opened(url) as other:
            if await other.swap_breaker(breaker(failures=i), expected=0):
                wins.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(insert, i)
    assert len(wins) == 1
    async with opened(url) as store:
        row = await store.get_breaker("wf")
    assert row is not None and row.version == 1 and row.failures == wins[0]
