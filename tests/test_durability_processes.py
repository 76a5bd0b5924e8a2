"""Durable execution across real processes, killed for real, on SQLite and PostgreSQL.

- Two processes resuming one run at the same moment: exactly one runs it.
- A process killed between writing a run's header and its first checkpoint (a 40 MB encrypted
  input makes that window wide): the run still resumes.
- The crash battery (``slow``): sequential, parallel and graph workflows, with and without
  retention, SIGKILLed at random moments, resumed (and sometimes killed again) until they
  finish. It counts re-runs of checkpointed tasks, lost tasks and failed resumes, and requires
  all three to be zero. ``PYAGENT_CRASH_TRIALS=N`` runs N trials per store (default 40),
  ``PYAGENT_CRASH_SEED=S`` replays the kill timings of one seed.

Processes are forked from a "zygote" that imported pyagent, its plugins and the database
drivers once, so each child starts in milliseconds instead of half a second; every child is
still a real process with its own connections, killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("pyagent_sql")
pytest.importorskip("pyagent_sequential")
pytest.importorskip("pyagent_parallel")
pytest.importorskip("pyagent_graph")

POSTGRES_ENV = "PYAGENT_TEST_POSTGRES_URL"
TRIALS_ENV = "PYAGENT_CRASH_TRIALS"

# The workflows, shared by the children and by the parent (which computes what a run that
# was never killed would return).
WORKFLOWS = r'''
import os
import anyio
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

N = 10
GRAPH = {"t0": [], "t1": ["t0"], "t2": ["t0"], "t3": ["t0"], "t4": ["t1", "t2"], "t5": ["t2", "t3"],
         "t6": ["t4"], "t7": ["t4", "t5"], "t8": ["t5"], "t9": ["t6", "t7", "t8"]}


def shape_of(value):
    """A deterministic output from the input, so a wrong input anywhere shows in the result."""
    if isinstance(value, dict):
        return ",".join(f"{k}={shape_of(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return "+".join(shape_of(v) for v in value)
    return str(value)


def build(shape, storage, retention, note=None, pause=None):
    def step(name):
        async def agent(value):
            if note is not None:
                note("start", name)
            if pause is not None:
                await anyio.sleep(pause(name))
            if shape == "big":
                out = len(value) if isinstance(value, str) else value + 1
            elif shape == "graph":
                out = f"{name}({shape_of(value)})"
            else:
                out = [*value, name] if shape == "sequential" else f"{name}:{value}"
            if note is not None:
                note("done", name)
            return out
        agent.__name__ = name
        return agent

    names = [f"t{i}" for i in range(N)]
    checkpointing = None
    if storage is not None:
        checkpointing = {"storage": storage, "interval": "after_each_task"}
        if retention:
            checkpointing["retention"] = retention
    if shape == "big":  # two steps over one huge input
        return Workflow(name="battery-big", pattern=ExecutionPattern.SEQUENTIAL, checkpointing=checkpointing,
                        steps=[Task(name=n, agent=step(n)) for n in names[:2]])
    if shape == "sequential":
        return Workflow(name="battery-sequential", pattern=ExecutionPattern.SEQUENTIAL,
                        steps=[Task(name=n, agent=step(n)) for n in names], checkpointing=checkpointing)
    if shape == "parallel":
        return Workflow(name="battery-parallel", pattern=ExecutionPattern.PARALLEL, max_concurrency=4,
                        steps=[Task(name=n, agent=step(n)) for n in names], checkpointing=checkpointing)
    return Workflow(name="battery-graph", pattern=ExecutionPattern.GRAPH, checkpointing=checkpointing,
                    steps=[Task(name=n, agent=step(n), dependencies=GRAPH[n]) for n in names])


def first_input(shape):
    return [] if shape == "sequential" else "in"
'''

ZYGOTE = r'''
import json, os, random, signal, sys, traceback

import anyio
import pyagent_sql, pyagent_sql.sqlite, pyagent_sql.postgres  # noqa: F401 - imported before any fork
import sqlalchemy.ext.asyncio, aiosqlite, asyncpg  # noqa: F401
from pyagent.plugins import get_runtime

WORKFLOWS = sys.argv[1]
exec(open(WORKFLOWS).read())
get_runtime().ensure_loaded()
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end


def child(mode, storage, run_id, shape, retention, effects, seed, hang_in=None, big=0, pauses=(0.005, 0.04)):
    rnd = random.Random(seed)
    fd = os.open(effects, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def note(kind, name):
        os.write(fd, f"{kind} {os.getpid()} {name}\n".encode())  # one append: survives a SIGKILL

    def pause(name):
        if name == hang_in:
            print("HANGING", name, flush=True)
            return 3600
        return rnd.uniform(*pauses)

    wf = build(shape, storage, retention, note, pause)
    print("STARTED", os.getpid(), flush=True)
    if mode == "run":
        value = "x" * big if big else first_input(shape)
        result = wf.run_sync(value, run_id=run_id)
    else:
        result = wf.resume_from(run_id, wait=(mode == "resume-wait"), wait_timeout=60)
    print("RESULT " + json.dumps({
        "ok": result.ok, "error": result.error, "status": result.status.value,
        "outputs": {k: (v if len(str(v)) < 10000 else len(str(v))) for k, v in result.outputs.items()},
        "reused": sorted(n for n, t in result.tasks.items() if t.reused)}), flush=True)
    return 0


for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            out = os.open(cmd["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for k, v in cmd.get("env", {}).items():
                os.environ[k] = v
            code = child(**cmd["args"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            from pyagent import RunOwnedError
            if isinstance(exc, RunOwnedError):
                print("OWNED " + json.dumps({"owner": exc.owner, "message": str(exc)}), flush=True)
                code = 3
            else:
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
'''


@dataclass
class Child:
    pid: int
    out: Path
    killed: bool = False

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_for(self, prefix: str, timeout: float) -> str | None:
        """The first output line starting with ``prefix``; None if the child ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.startswith(prefix):
                    return line
            if not self.alive():
                for line in self.lines():  # written just before it ended
                    if line.startswith(prefix):
                        return line
                return None
            time.sleep(0.002)
        raise AssertionError(f"no {prefix!r} from child {self.pid} within {timeout} s:\n{self.out.read_text()}")

    def kill(self) -> None:
        self.killed = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.wait_exit(30)

    def wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"child {self.pid} did not end within {timeout} s:\n{self.out.read_text()}")
            time.sleep(0.002)

    def result(self) -> dict[str, Any] | None:
        for line in self.lines():
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
        return None


@dataclass
class Zygote:
    folder: Path
    proc: subprocess.Popen[str]
    count: int = 0
    children: list[Child] = field(default_factory=list)

    def spawn(self, env: dict[str, str] | None = None, **args: Any) -> Child:
        self.count += 1
        out = self.folder / f"child-{self.count}.out"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"out": str(out), "args": args, "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the zygote died: {self.proc.wait()} {self.proc.stderr.read() if self.proc.stderr else ''}")
        child = Child(int(line), out)
        self.children.append(child)
        return child


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    folder = tmp_path_factory.mktemp("processes")
    (folder / "workflows.py").write_text(WORKFLOWS)
    (folder / "zygote.py").write_text(ZYGOTE)
    proc = subprocess.Popen([sys.executable, str(folder / "zygote.py"), str(folder / "workflows.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=folder)
    z = Zygote(folder, proc)
    try:
        yield z
    finally:
        for child in z.children:
            if child.alive():
                os.kill(child.pid, signal.SIGKILL)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


def _postgres() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


async def _drop_schema(base: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'checkpoints.db'}"
        return
    base = _postgres()
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to run against "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test; CI sets it)")
    schema = f"pyagent_proc_{uuid.uuid4().hex[:10]}"
    yield base + ("&" if "?" in base else "?") + f"schema={schema}"
    asyncio.run(_drop_schema(base, schema))


def _workflows() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(WORKFLOWS, namespace)
    return namespace


def effects_of(path: Path) -> list[tuple[str, int, str]]:
    if not path.exists():
        return []
    return [(kind, int(pid), name) for kind, pid, name in (line.split() for line in path.read_text().splitlines())]


def saved_tasks(storage: str, run_id: str) -> set[str] | None:
    """The tasks the store holds as completed for ``run_id`` (what a resume must not run
    again), or None when the run was never stored (killed before its first checkpoint)."""
    from pyagent.durability.replay import load_run
    from pyagent.errors import StateError

    try:
        state, _ = anyio.run(load_run, storage, run_id)
    except StateError as exc:
        if "no run" in str(exc):
            return None
        raise
    return set(state.completed)


# -- two resumes at once ---------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["together", "50ms-apart"])
def test_two_processes_resuming_one_run_at_once_run_it_once(
        zygote: Zygote, storage: str, tmp_path: Path, delay: float) -> None:
    """The run is killed while t3 is in flight; two processes resume it at once. Exactly one
    runs it (t3 once more, every other task not again); the other is refused naming the owner.
    A third process afterwards (waiting for the claim if need be) finds nothing left to run."""
    for trial in range(2):
        run_id = f"race-{delay}-{trial}-{uuid.uuid4().hex[:6]}"
        effects = tmp_path / f"effects-{run_id}.log"
        common = {"storage": storage, "run_id": run_id, "shape": "sequential", "retention": None,
                  "effects": str(effects)}
        first = zygote.spawn(mode="run", seed=trial, hang_in="t3", **common)
        assert first.wait_for("HANGING", 60) is not None, first.out.read_text()
        first.kill()
        killed_at = len(effects_of(effects))

        # Slow tasks: the winner is still running when the other one claims, however busy the machine.
        a = zygote.spawn(mode="resume", seed=100 + trial, pauses=(0.1, 0.15), **common)
        if delay:
            a.wait_for("STARTED", 30)
            time.sleep(delay)
        b = zygote.spawn(mode="resume", seed=200 + trial, pauses=(0.1, 0.15), **common)
        deadline = time.monotonic() + 90
        while a.alive() and b.alive():  # the refused one ends at once; the winner goes on
            assert time.monotonic() < deadline
            time.sleep(0.002)
        waiter = zygote.spawn(mode="resume-wait", seed=300 + trial, **common)
        for child in (a, b, waiter):
            child.wait_exit(90)

        outcomes = []
        for child in (a, b):
            lines = child.lines()
            if any(line.startswith("OWNED ") for line in lines):
                outcomes.append("owned")
            else:
                res = child.result()
                assert res is not None and res["ok"], child.out.read_text()
                outcomes.append("ran")
        assert sorted(outcomes) == ["owned", "ran"], (a.out.read_text(), b.out.read_text())
        owned_line = next(line for c in (a, b) for line in c.lines() if line.startswith("OWNED "))
        winner = a if outcomes[0] == "ran" else b
        assert f":{winner.pid}:" in json.loads(owned_line[6:])["owner"]

        after = effects_of(effects)[killed_at:]
        starts = Counter(name for kind, _, name in after if kind == "start")
        assert starts == Counter({f"t{i}": 1 for i in range(3, 10)}), starts  # t3 once more; none twice
        assert {pid for _, pid, _ in after} == {winner.pid}
        waited = waiter.result()
        assert waited is not None and waited["ok"], waiter.out.read_text()
        assert waited["reused"] == sorted(f"t{i}" for i in range(10))  # the finished run: nothing to do


# -- a kill between the run header and the first checkpoint -------------------------------------


def _header_exists(storage: str, run_id: str) -> bool:
    if storage.startswith("sqlite"):
        import sqlite3

        path = storage.split(":///", 1)[1]
        if not os.path.exists(path):
            return False
        conn = sqlite3.connect(path, timeout=0.05)
        try:
            return conn.execute("SELECT 1 FROM pyagent_runs WHERE run_id = ?", (run_id,)).fetchone() is not None
        except sqlite3.OperationalError:  # not created yet, or locked this instant
            return False
        finally:
            conn.close()
    return asyncio.run(_pg_header_exists(storage, run_id))


async def _pg_header_exists(storage: str, run_id: str) -> bool:
    import asyncpg

    base, _, query = storage.partition("?")
    schema = dict(p.split("=", 1) for p in query.split("&"))["schema"]
    conn = await asyncpg.connect(base)
    try:
        found = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".pyagent_runs')
        if not found:
            return False
        return bool(await conn.fetchval(f'SELECT count(*) FROM "{schema}".pyagent_runs WHERE run_id = $1', run_id))
    finally:
        await conn.close()


def test_a_process_killed_as_its_run_is_first_stored_leaves_a_resumable_run(
        zygote: Zygote, storage: str, tmp_path: Path) -> None:
    """With a 40 MB encrypted input, encrypting the first checkpoint takes long after the
    header used to be written: killing the process the moment the header appears left a run
    that could not be resumed. The header and the first checkpoint are now one write."""
    cryptography = pytest.importorskip("cryptography.fernet")
    key = cryptography.Fernet.generate_key().decode()
    run_id = f"big-{uuid.uuid4().hex[:8]}"
    effects = tmp_path / "effects.log"
    big = 40 * 1024 * 1024
    common = {"storage": storage, "run_id": run_id, "shape": "big", "retention": None,
              "effects": str(effects)}
    first = zygote.spawn(env={"PYAGENT_STATE_KEY": key}, mode="run", seed=1, hang_in="t0", big=big, **common)
    deadline = time.monotonic() + 120
    while not _header_exists(storage, run_id):
        assert first.alive(), first.out.read_text()
        assert time.monotonic() < deadline, "the run header never appeared"
    first.kill()  # the moment its header is visible

    resumed = zygote.spawn(env={"PYAGENT_STATE_KEY": key}, mode="resume", seed=2, **common)
    resumed.wait_exit(120)
    result = resumed.result()
    assert result is not None, resumed.out.read_text()
    assert result["ok"], result["error"]
    # The input came back from the first checkpoint, all 40 MB of it.
    assert result["outputs"] == {"t0": big, "t1": big + 1}


# -- the crash battery ------------------------------------------------------------------------


SHAPES = [("sequential", None), ("parallel", None), ("graph", None),
          ("sequential", 2), ("parallel", 2), ("graph", 2)]


@dataclass
class Tally:
    trials: int = 0
    kills: int = 0
    reruns_of_checkpointed: int = 0
    lost: int = 0
    failed_resumes: int = 0
    unsaved_reruns: int = 0  # done before a kill but not yet checkpointed: at-least-once, allowed
    problems: list[str] = field(default_factory=list)


def _trial(zygote: Zygote, storage: str, folder: Path, n: int, rnd: random.Random, tally: Tally,
           expected: dict[tuple[str, int | None], dict[str, Any]]) -> None:
    shape, retention = SHAPES[n % len(SHAPES)]
    run_id = f"battery-{n}-{uuid.uuid4().hex[:6]}"
    effects = folder / f"effects-{run_id}.log"
    common = {"storage": storage, "run_id": run_id, "shape": shape, "retention": retention,
              "effects": str(effects)}
    saved: set[str] = set()  # checkpointed as completed at the latest kill
    seen = 0  # effects lines already judged
    mode = "run"
    for round_ in range(5):
        child = zygote.spawn(mode=mode, seed=rnd.randrange(1 << 30), **common)
        last = round_ == 4
        kill = not last and (round_ == 0 or rnd.random() < 0.5)
        if kill:
            child.wait_for("STARTED", 30)
            time.sleep(rnd.uniform(0.0, 0.12))
            child.kill()
        else:
            child.wait_exit(120)
        effects_now = effects_of(effects)
        for kind, _pid, name in effects_now[seen:]:
            if kind == "start" and name in saved:
                tally.reruns_of_checkpointed += 1
                tally.problems.append(f"{run_id} ({shape}, retention {retention}): checkpointed {name} ran again")
        done_before = {name for kind, _, name in effects_now[:seen] if kind == "done"}
        tally.unsaved_reruns += sum(1 for kind, _, name in effects_now[seen:]
                                    if kind == "start" and name in done_before and name not in saved)
        seen = len(effects_now)
        if child.killed and child.result() is None:
            tally.kills += 1
            stored = saved_tasks(storage, run_id)
            # Killed before its first checkpoint: there is no run to resume; start it again.
            mode, saved = ("run", set()) if stored is None else ("resume", stored)
            continue
        result = child.result()
        if result is None or not result["ok"]:
            if mode != "run":
                tally.failed_resumes += 1
            tally.problems.append(f"{run_id} ({shape}, retention {retention}), {mode}: "
                                  f"{result['error'] if result else child.out.read_text()[-2000:]}")
            return
        want = expected[(shape, retention)]
        missing = sorted(set(want) - {name for kind, _, name in effects_now if kind == "done"})
        if result["outputs"] != want or missing:
            tally.lost += max(1, len(missing))
            tally.problems.append(f"{run_id} ({shape}, retention {retention}): lost {missing}, "
                                  f"outputs {result['outputs']} != {want}")
        return
    tally.problems.append(f"{run_id}: did not finish in 5 rounds")


@pytest.mark.slow
def test_crash_battery(zygote: Zygote, storage: str, tmp_path: Path) -> None:
    trials = int(os.environ.get(TRIALS_ENV, "40"))
    namespace = _workflows()
    expected: dict[tuple[str, int | None], dict[str, Any]] = {}
    for shape, retention in SHAPES:
        wf = namespace["build"](shape, None, retention)
        result = wf.run_sync(namespace["first_input"](shape))
        assert result.ok, result.error
        expected[(shape, retention)] = result.outputs
    seed = int(os.environ.get("PYAGENT_CRASH_SEED", "0")) or random.randrange(1, 1 << 30)
    rnd = random.Random(seed)
    tally = Tally()
    started = time.monotonic()
    for n in range(trials):
        _trial(zygote, storage, tmp_path, n, rnd, tally, expected)
        tally.trials += 1
    elapsed = time.monotonic() - started
    report = (f"{storage.split(':', 1)[0]} (PYAGENT_CRASH_SEED={seed}): {tally.trials} trials, "
              f"{tally.kills} SIGKILLs in {elapsed:.1f} s; "
              f"re-runs of checkpointed tasks {tally.reruns_of_checkpointed}, lost tasks {tally.lost}, "
              f"failed resumes {tally.failed_resumes}; finished-but-unsaved tasks run again "
              f"{tally.unsaved_reruns}")
    print(report)
    assert tally.kills >= 0.8 * trials, report  # most rounds were killed mid-run, not after
    assert (tally.reruns_of_checkpointed, tally.lost, tally.failed_resumes) == (0, 0, 0), \
        report + "\n" + "\n".join(tally.problems[:20])
    assert not tally.problems, "\n".join(tally.problems[:20])


def test_the_workflows_under_test_are_deterministic() -> None:
    """The battery compares every resumed run with a run that was never killed: that only
    means something if the same workflow always gives the same outputs."""
    namespace = _workflows()
    for shape, retention in SHAPES:
        outs = [namespace["build"](shape, None, retention).run_sync(namespace["first_input"](shape)).outputs
                for _ in range(2)]
        assert outs[0] == outs[1] and len(outs[0]) == 10
