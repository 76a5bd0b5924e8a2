"""Checkpointing: save a run's progress to a store as it goes, and load it back to resume.

A run's checkpoints are appended with an increasing ``seq``. The first is **full** (the
input, ``ctx.state`` and any tasks already completed when a run resumes); each later one is
a **delta** holding only the task records finished since the previous checkpoint and the
``ctx.state`` keys that changed. So a 200-task chain writes 200 small rows and storage grows
linearly. With ``retention=N`` a full checkpoint is written every N checkpoints and older
ones are pruned, so a run keeps between N and 2N checkpoints.

Folding the checkpoints from the latest full one on gives the state the run last saved;
``workflow.resume_from(run_id)`` continues from it. The kernel encodes (and, with
``PYAGENT_STATE_KEY``, encrypts) every payload; stores only see bytes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.durability import codec
from pyagent.durability.state import WorkflowState, encode_record
from pyagent.durability.store import Checkpoint, RunHeader, Store, StoredRun
from pyagent.errors import (
    DriverLoadFailure,
    PluginNotInstalledError,
    PyAgentError,
    StateError,
    StoreError,
)
from pyagent.model import events as ev
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.durability.ownership import Ownership
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.policies import CheckpointConfig
    from pyagent.model.results import TaskResult, WorkflowResult

log = logging.getLogger("pyagent.checkpoint")

PAYLOAD_VERSION = 1
_CREDENTIALS = re.compile(r"(://[^:/@]+):[^@/]*@")


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    return _CREDENTIALS.sub(r"\1:***@", url)


def store_scheme(url: str) -> str:
    """The driver name for a store URL: ``postgresql+asyncpg://`` → ``postgresql``."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        scheme, sep, _ = url.partition(":")
    return scheme.split("+", 1)[0].lower()


async def open_store(url: str, *, setting: str = "checkpointing.storage") -> Store:
    """Create and open the store for ``url`` (PluginNotInstalledError names the plugin to install)."""
    from pyagent.plugins import get_runtime

    try:
        factory = get_runtime().driver("stores", store_scheme(url))
    except PluginNotInstalledError as exc:
        # Name the setting the URL came from, not only the missing store.
        exc.args = (f"{setting}={safe_url(url)!r}: {exc}",)
        raise
    try:
        store: Store = factory(url)
        await store.open()
    except PyAgentError:
        raise
    except Exception as exc:
        raise DriverLoadFailure(
            f"{setting} {safe_url(url)!r} could not be opened: {type(exc).__name__}: {exc} "
            "(is the database reachable and the URL right?)"
        ) from exc
    return store


async def _close(store: Store) -> None:
    try:
        await store.close()
    except Exception as exc:  # closing must never hide the run's outcome
        log.warning("closing store %s failed: %s", safe_url(store.url), exc)


# -- writing ----------------------------------------------------------------------------------


def store_failure(store: Store, action: str, exc: Exception) -> PyAgentError:
    """A store's own exception as a kernel error, without its text.

    Stores raise kernel errors with messages safe to show; anything else (a third-party store
    letting a driver error through) may carry the data being written, so only its type is kept
    in the message (the exception stays attached as the cause).
    """
    if isinstance(exc, PyAgentError):
        return exc
    return StoreError(f"{action} in {safe_url(store.url)} failed: {type(exc).__name__} "
                      "(its message is withheld: driver errors may carry the data written)")


class RunRecorder:
    """Saves a run's header (its audit record) when it starts and when it ends.

    Writes carry the run's lease token (``ownership``) as a fence, so a process that lost the
    run to another owner can no longer change it.
    """

    def __init__(self, run: WorkflowRun, store: Store, ownership: Ownership | None = None) -> None:
        self.run = run
        self.store = store
        self.ownership = ownership

    @property
    def fence(self) -> str | None:
        return None if self.ownership is None else self.ownership.token

    def prepare(self) -> None:
        """Encode what the first write needs, before anything is written or claimed."""

    async def begin(self) -> None:
        from pyagent.durability.history import summary_of_run

        await self._save_header(summary_of_run(self.run))

    def _header(self, summary: dict[str, Any]) -> RunHeader:
        from pyagent.durability.history import to_payload

        run = self.run
        return RunHeader(
            run_id=run.run_id, workflow=run.workflow.name, status=summary["status"],
            started_at=run.started_at, finished_at=summary["finished_at"], payload=to_payload(summary),
        )

    async def _save_header(self, summary: dict[str, Any]) -> None:
        header = self._header(summary)
        try:
            await self.store.save_run(header, fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"saving the header of run {self.run.run_id!r}", exc) from exc

    async def finish(self, result: WorkflowResult | None) -> None:
        """Save the final checkpoint and header; runs shielded so a cancelled run still records how it ended.

        The header is saved even when the final checkpoint cannot be, so a stored run never
        stays ``running`` after it ended here. A run whose lease was lost writes nothing: it
        belongs to its new owner.
        """
        from pyagent.durability.history import summary_of_result, summary_of_run

        if self.ownership is not None and self.ownership.lost is not None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            try:
                await self._flush_final(result)
            except Exception as exc:
                self._report(result, f"final checkpoint to {safe_url(self.store.url)} failed", exc)
            try:
                if result is not None:
                    summary = summary_of_result(result, self.run.workflow.task_count,
                                                self.run.handoffs, self.run.audit_trail)
                else:
                    summary = summary_of_run(self.run)
                await self._save_header(summary)
            except Exception as exc:
                self._report(result, f"saving the final run header to {safe_url(self.store.url)} failed", exc)

    def _report(self, result: WorkflowResult | None, what: str, exc: Exception) -> None:
        # The run has ended: its result must not be lost to a storage problem, which is
        # logged and listed in result.errors instead.
        message = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("run %s: %s", self.run.run_id, message)
        if result is not None:
            previous = result.errors.get("checkpoint")
            result.errors["checkpoint"] = message if previous is None else f"{previous}; {message}"

    async def _flush_final(self, result: WorkflowResult | None) -> None:
        return None


class Checkpointer(RunRecorder):
    """Writes a run's checkpoints; installed as one of the run's ``after_task`` hooks.

    With ``retention`` a full checkpoint replaces the deltas only once the deltas written
    since the last full one outweigh it: each full checkpoint is then at most about twice
    the deltas it replaces, so the bytes written stay linear in the number of tasks however
    long the run. Pruning what the new full checkpoint makes unnecessary runs in the
    background (``spawn``), never holding up the run's checkpoint writes.
    """

    def __init__(self, run: WorkflowRun, store: Store, config: CheckpointConfig | None,
                 *, next_seq: int = 0, ownership: Ownership | None = None,
                 spawn: Callable[[Callable[[], Awaitable[None]]], None] | None = None) -> None:
        super().__init__(run, store, ownership)
        self.every = None if config is None else config.interval_seconds
        self.retention = None if config is None else config.retention
        self.seq = next_seq
        self._pending: list[TaskResult] = []
        self._saved: dict[str, TaskStatus] = {}
        self._unsaveable: set[str] = set()  # tasks whose output cannot be encoded (reported once)
        self._shared: dict[Any, bytes] = {}
        self._last_write = 0.0
        self._clock = run.runtime.clock
        self._full_bytes = 0  # size of the latest full checkpoint
        self._delta_bytes = 0  # deltas written since it
        self._first: tuple[bytes, int] | None = None  # the prepared first checkpoint
        self._spawn = spawn
        self._prune_state = "idle"  # idle | running | again
        self._pruned = anyio.Event()
        self._pruned.set()

    def prepare(self) -> None:
        body = self._full_body()  # an input that cannot be saved fails here, before any write
        self._first = (self._payload("full", body), len(body["tasks"]))

    async def begin(self) -> None:
        from pyagent.durability.history import summary_of_run

        if self._first is None:
            self.prepare()
        assert self._first is not None
        payload, ntasks = self._first
        self._first = None
        run = self.run
        seq = self.seq
        header = self._header(summary_of_run(run))
        cp = Checkpoint(run_id=run.run_id, seq=seq, kind="full", payload=payload, created_at=self._clock.time())
        try:
            await self.store.begin_run(header, cp, fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"starting run {run.run_id!r}", exc) from exc
        self.seq += 1
        self._full_bytes, self._delta_bytes = len(payload), 0
        run.emit(ev.CHECKPOINT_SAVED, status=run.status.value, seq=seq, checkpoint="full",
                 size=len(payload), tasks=ntasks)
        self._last_write = self._clock.monotonic()

    # after_task hook
    async def __call__(self, run: WorkflowRun, rec: TaskResult) -> None:
        self._pending.append(rec)
        if self.every is not None and self._clock.monotonic() - self._last_write < self.every:
            return
        await self.flush()

    async def flush(self, extra: dict[str, Any] | None = None, *, force: bool = False) -> None:
        """Write what changed since the last checkpoint (nothing if nothing changed).

        A task output or ``ctx.state`` value that cannot be encoded raises StateError naming
        it, after everything else that changed has been written.
        """
        recs, self._pending = self._pending, []
        tasks = []
        marked: list[tuple[TaskResult, TaskStatus | None]] = []
        bad: StateError | None = None
        for rec in recs:
            before = self._saved.get(rec.name)
            if before is rec.status:
                continue
            # Marked first: a record that cannot be encoded is reported once, not again at the end.
            self._saved[rec.name] = rec.status
            try:
                tasks.append(encode_record(rec))
            except StateError as exc:
                self._unsaveable.add(rec.name)
                bad = bad or exc
                continue
            marked.append((rec, before))
        shared_before = dict(self._shared) if self._shared or self.run.state else None
        body: dict[str, Any] = {"tasks": tasks}
        try:
            changed, removed = self._shared_changes()
        except StateError as exc:
            if shared_before is not None:
                self._shared = shared_before
            shared_before, changed, removed = None, {}, []
            bad = bad or exc
        if changed:
            body["shared_set"] = _keyed(changed)
        if removed:
            body["shared_del"] = [codec.to_jsonable(k, f"ctx.state key {k!r}") for k in removed]
        if extra:
            body.update(extra)
        if not tasks and not changed and not removed and not force:
            if bad is not None:
                raise bad
            return
        saved_before = None
        try:
            if self.retention is not None and self._delta_bytes >= self._full_bytes:
                saved_before = dict(self._saved)
                await self._write("full", self._full_body(extra))
                saved_before = None
                self._start_prune()
            else:
                await self._write("delta", body)
        except BaseException:
            # Not stored (the run was cancelled during the write, or the store failed): these
            # records and ctx.state changes are still to be written, at the latest by the
            # run's final checkpoint.
            if saved_before is not None:
                self._saved = saved_before
            for rec, before in marked:
                if before is None:
                    self._saved.pop(rec.name, None)
                else:
                    self._saved[rec.name] = before
            self._pending[:0] = [rec for rec, _ in marked]
            if shared_before is not None:
                self._shared = shared_before
            raise
        self._last_write = self._clock.monotonic()
        if bad is not None:
            raise bad

    def _start_prune(self) -> None:
        if self._prune_state != "idle":
            self._prune_state = "again"
            return
        self._prune_state = "running"
        self._pruned = anyio.Event()
        if self._spawn is None:
            return  # pruned inline by the caller's next write: see _prune_inline
        self._spawn(self._prune)

    async def _prune(self) -> None:
        assert self.retention is not None
        try:
            while True:
                try:
                    await self.store.prune(self.run.run_id, self.retention)
                except Exception as exc:  # older checkpoints stay a while longer; nothing is lost
                    log.warning("run %s: pruning old checkpoints in %s failed: %s", self.run.run_id,
                                safe_url(self.store.url), store_failure(self.store, "pruning", exc))
                if self._prune_state != "again":
                    break
                self._prune_state = "running"
        finally:
            self._prune_state = "idle"
            self._pruned.set()

    async def _flush_final(self, result: WorkflowResult | None) -> None:
        run = self.run
        for name, rec in list(run.records.items()):
            if (rec.status.finished and self._saved.get(name) is not rec.status and rec not in self._pending
                    and name not in self._unsaveable):
                self._pending.append(rec)
        extra = {"status": run.status.value, "finished_at": run.finished_at,
                 "error": None if result is None else result.error}
        try:
            await self.flush(extra, force=True)
        finally:
            await self._settle_prune()

    async def _settle_prune(self) -> None:
        """Let a background prune finish before the store is closed (bounded)."""
        if self._prune_state == "idle":
            return
        if self._spawn is None:
            await self._prune()
            return
        with anyio.move_on_after(10):
            await self._pruned.wait()

    def _shared_changes(self) -> tuple[dict[Any, Any], list[Any]]:
        """ctx.state keys set (with their encoded values) and removed since the last checkpoint."""
        state = self.run.state
        if not state and not self._shared:
            return {}, []
        changed: dict[Any, Any] = {}
        for key, value in list(state.items()):
            enc = codec.to_jsonable(value, f"ctx.state[{key!r}]")
            raw = codec.dumps(enc, f"ctx.state[{key!r}]")
            if self._shared.get(key) != raw:
                self._shared[key] = raw
                changed[key] = enc
        removed = [k for k in self._shared if k not in state]
        for k in removed:
            del self._shared[k]
        return changed, removed

    def _full_body(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        run = self.run
        self._pending = []
        tasks = []
        # A resumed run's earlier tasks are only in run.records once the pattern reaches them;
        # a full checkpoint that left them out would lose them to the next crash.
        records = {n: r for n, r in run._resumed.items() if r.status is TaskStatus.COMPLETED}
        records.update(run.records)
        unsaveable = self._unsaveable
        for name, rec in list(records.items()):
            if rec.status.finished and name not in unsaveable:
                tasks.append(encode_record(rec))
                self._saved[name] = rec.status
        shared = codec.to_jsonable(dict(run.state), "ctx.state")
        self._shared = {}
        self._shared_changes()
        body = {
            "workflow": run.workflow.name, "run_id": run.run_id, "status": run.status.value,
            "started_at": run.started_at, "order": run.workflow.task_names,
            "input": codec.to_jsonable(run.input, "the run's input"),
            "shared": shared,
            "tasks": tasks,
        }
        if extra:
            body.update(extra)
        return body

    def _payload(self, kind: str, body: dict[str, Any]) -> bytes:
        """The sealed payload of a checkpoint; StateError naming what cannot be encoded."""
        data = {"v": PAYLOAD_VERSION, "kind": kind, **body}
        try:
            raw = codec.dumps(data, f"a checkpoint of run {self.run.run_id!r}")
        except StateError:
            # Rare (values are checked as they are encoded): name the culprit when possible.
            for t in body.get("tasks", ()):
                codec.dumps(t, f"the output of task {t.get('name')!r}")
            codec.dumps(body.get("input"), "the run's input")
            raise
        return codec.seal(raw)

    async def _write(self, kind: str, body: dict[str, Any]) -> None:
        run = self.run
        payload = self._payload(kind, body)
        seq = self.seq
        self.seq += 1
        try:
            await self.store.append_checkpoint(Checkpoint(
                run_id=run.run_id, seq=seq, kind=kind, payload=payload, created_at=self._clock.time(),
            ), fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"checkpoint {seq} of run {run.run_id!r}", exc) from exc
        if kind == "full":
            self._full_bytes, self._delta_bytes = len(payload), 0
        else:
            self._delta_bytes += len(payload)
        run.emit(ev.CHECKPOINT_SAVED, status=run.status.value, seq=seq, checkpoint=kind, size=len(payload),
                 tasks=len(body.get("tasks", ())))


def _keyed(encoded: dict[Any, Any]) -> Any:
    """A dict of already encoded values, its keys encoded the way ``codec.to_jsonable`` does:
    as it is when every key is a string, else as tagged (key, value) pairs."""
    if codec.TAG not in encoded and all(type(k) is str for k in encoded):
        return encoded
    return {codec.TAG: "dict", "items": [
        [codec.to_jsonable(k, f"ctx.state key {k!r}"), v] for k, v in encoded.items()]}


# -- reading ----------------------------------------------------------------------------------


def fold(stored: StoredRun, what: str, *, allow_plaintext: bool | None = None) -> WorkflowState:
    """The state a run last saved: its latest full checkpoint with every later delta applied.

    ``allow_plaintext``: accept unencrypted checkpoints although ``PYAGENT_STATE_KEY`` is set
    (see :func:`pyagent.durability.codec.unseal`).
    """
    cps = sorted(stored.checkpoints, key=lambda c: c.seq)
    if not cps:
        raise StateError(f"{what} has no checkpoints to resume from")
    base: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] = {}
    for cp in cps:
        where = f"{what} (checkpoint {cp.seq})"
        body = codec.loads(codec.unseal(cp.payload, where, allow_plaintext=allow_plaintext), where)
        if not isinstance(body, dict) or body.get("v") != PAYLOAD_VERSION:
            raise StateError(
                f"{where} has payload version {body.get('v') if isinstance(body, dict) else None!r}; "
                f"this pyagent reads version {PAYLOAD_VERSION}"
            )
        try:
            kind = body["kind"]
            records = _records(body.get("tasks", []))
            if kind == "full":
                base = dict(body)
                if not isinstance(base.setdefault("shared", {}), dict):
                    raise TypeError("ctx.state is not a mapping")
                tasks = records
                continue
            if kind != "delta":
                raise ValueError(f"unknown checkpoint kind {kind!r}")
            if base is None:
                raise StateError(f"{what} has no full checkpoint before checkpoint {cp.seq}: corrupt storage")
            tasks.update(records)
            shared = base["shared"]
            shared.update(body.get("shared_set", {}))
            for k in body.get("shared_del", []):
                shared.pop(k, None)
        except StateError:
            raise
        except Exception as exc:  # the payload parsed but is not what pyagent writes
            raise StateError(f"{where} is damaged: {type(exc).__name__}: {exc}") from None
        for field in ("status", "finished_at", "error"):
            if field in body:
                base[field] = body[field]
    if base is None:
        raise StateError(f"{what} has no full checkpoint: corrupt storage")
    # A killed run's last saved status says "running": that is what it was.
    base["tasks"] = list(tasks.values())
    return WorkflowState.decode(base, what)


def _records(raw: Any) -> dict[str, dict[str, Any]]:
    """A checkpoint's task records by name; ValueError/TypeError for anything pyagent does not write."""
    if not isinstance(raw, list):
        raise TypeError(f"its task records are a {type(raw).__name__}, not a list")
    out: dict[str, dict[str, Any]] = {}
    for t in raw:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ValueError(f"a task record has no name: {str(t)[:80]}")
        TaskStatus(str(t.get("status")))  # ValueError for an unknown status
        out[t["name"]] = t
    return out


async def load_run(url: str, run_id: str, *, allow_plaintext: bool | None = None) -> tuple[WorkflowState, int]:
    """The saved state of ``run_id`` in the store at ``url`` and the next free checkpoint seq.

    Reads only: it does not claim the run (a resume claims it before loading, see
    :func:`pyagent.runner.resume_run`).
    """
    store = await open_store(url)
    try:
        stored = await _load(store, run_id)
    finally:
        await _close(store)
    return state_of(stored, run_id, url, allow_plaintext=allow_plaintext)


async def _load(store: Store, run_id: str) -> StoredRun | None:
    try:
        return await store.load(run_id)
    except Exception as exc:
        raise store_failure(store, f"loading run {run_id!r}", exc) from exc


def state_of(stored: StoredRun | None, run_id: str, url: str, *,
             allow_plaintext: bool | None = None) -> tuple[WorkflowState, int]:
    """The folded state of a loaded run and its next checkpoint seq; StateError when there is none."""
    what = f"run {run_id!r} in {safe_url(url)}"
    if stored is None:
        raise StateError(f"no run {run_id!r} in {safe_url(url)}: check the run id (pyagent history --storage URL)")
    if not stored.checkpoints:
        # Only runs written before the header and first checkpoint were one transaction.
        raise StateError(
            f"{what} has no checkpoints to resume from: it was stopped before its first "
            f"checkpoint, so its input was never saved; start it again with "
            f"workflow.run(input, run_id={run_id!r})"
        )
    state = fold(stored, what, allow_plaintext=allow_plaintext)
    next_seq = max(c.seq for c in stored.checkpoints) + 1
    return state, next_seq


async def next_seq(store: Store, run_id: str) -> int:
    """The seq a new checkpoint of ``run_id`` gets (0 for a run the store does not have)."""
    stored = await _load(store, run_id)
    if stored is None or not stored.checkpoints:
        return 0
    return max(c.seq for c in stored.checkpoints) + 1
