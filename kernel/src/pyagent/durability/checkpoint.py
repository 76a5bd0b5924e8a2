"""Checkpointing: save a run's progress to a store as it goes, and load it back to resume.

A run's checkpoints are appended with an increasing ``seq``. The first is **full** (the
input, ``ctx.state`` and any tasks already completed when a run resumes); each later one is
a **delta** holding only the task records finished since the previous checkpoint and the
``ctx.state`` keys that changed. So a 200-task chain writes 200 small rows and storage grows
linearly. With ``retention=N`` a full checkpoint replaces the deltas once they outweigh it,
and the checkpoints it makes unnecessary are pruned in the background (see :class:`Checkpointer`).

Folding the checkpoints from the latest full one on gives the state the run last saved
(:mod:`pyagent.durability.replay`); ``workflow.resume_from(run_id)`` continues from it. The
kernel encodes (and, with ``PYAGENT_STATE_KEY``, encrypts) every payload; stores only see
bytes. Stores are opened by URL in :mod:`pyagent.durability.stores`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from pyagent.durability import codec
from pyagent.durability.replay import PAYLOAD_VERSION
from pyagent.durability.state import encode_record
from pyagent.durability.store import Checkpoint, RunHeader, Store, supports_end_run
from pyagent.durability.stores import (
    safe_url,
    store_failure,
)
from pyagent.errors import (
    RunOwnedError,
    StateError,
)
from pyagent.model import events as ev
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.durability.ownership import Ownership
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.policies import CheckpointConfig
    from pyagent.model.results import TaskResult, WorkflowResult

log = logging.getLogger("pyagent.checkpoint")



# -- writing ----------------------------------------------------------------------------------


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
            started_at=run.first_started_at, finished_at=summary["finished_at"], payload=to_payload(summary),
        )

    async def _save_header(self, summary: dict[str, Any]) -> None:
        await self._save(self._header(summary))

    async def _save(self, header: RunHeader) -> None:
        try:
            await self.store.save_run(header, fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"saving the header of run {self.run.run_id!r}", exc) from exc

    async def on_waiting(self, waiting: bool) -> None:
        """The run started waiting for answers (True) or runs again (False): its header says so."""
        from pyagent.durability.history import summary_of_run

        await self._save_header(summary_of_run(self.run))

    async def finish(self, result: WorkflowResult | None) -> None:
        """Save the final checkpoint and header; runs shielded so a cancelled run still records how it ended.

        The header is saved even when the final checkpoint cannot be, so a stored run never
        stays ``running`` after it ended here. A run whose lease was lost writes nothing: it
        belongs to its new owner. On a store with ``end_run`` the final checkpoint, the
        header and the lease's release are one write.
        """
        from pyagent.durability.history import summary_of_result, summary_of_run

        if self.ownership is not None and self.ownership.lost is not None:
            return
        with anyio.move_on_after(30, shield=True):
            header: RunHeader | None = None
            failed: Exception | None = None
            try:
                if result is not None:
                    summary = summary_of_result(result, self.run.workflow.task_count,
                                                self.run.handoffs, self.run.audit_trail,
                                                first_started_at=self.run.first_started_at,
                                                resumes=self.run.resumes, trigger=self.run.trigger)
                else:
                    summary = summary_of_run(self.run)
                header = self._header(summary)
            except Exception as exc:
                failed = exc
            ended = False
            try:
                ended = await self._flush_final(result, header)
            except Exception as exc:
                self._report(result, f"final checkpoint to {safe_url(self.store.url)} failed", exc)
            if ended:
                return
            try:
                if failed is not None:
                    raise failed
                assert header is not None
                await self._save(header)
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

    async def _flush_final(self, result: WorkflowResult | None, header: RunHeader | None) -> bool:
        """Write the final checkpoint; True when ``header`` was saved with it (and the lease given back)."""
        return False


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
        self._ending: RunHeader | None = None  # the final header, written with the next checkpoint
        self._ended = False
        self._spawn = spawn
        self._prune_state = "idle"  # idle | running | again
        self._pruned: anyio.Event | None = None  # set when a background prune ends

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
        try:
            await self.flush()
        except RunOwnedError as exc:
            if self.ownership is None:
                raise
            # Taken over while this process was stalled: the run is another process's now.
            self.ownership.refused(exc)
            await anyio.lowlevel.checkpoint()  # the run's scope is cancelled: it stops here
            raise

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
            if self._pruned is not None:
                self._pruned.set()

    async def on_waiting(self, waiting: bool) -> None:
        """Saves the waiting tasks and the run's ``waiting`` status, so a run killed while it
        waits resumes (and is listed) as waiting; then the header."""
        if waiting:
            run = self.run
            for name, rec in list(run.records.items()):
                if (rec.status is TaskStatus.WAITING and self._saved.get(name) is not rec.status
                        and rec not in self._pending):
                    self._pending.append(rec)
            await self.flush({"status": run.status.value}, force=True)
        await super().on_waiting(waiting)

    async def _flush_final(self, result: WorkflowResult | None, header: RunHeader | None) -> bool:
        run = self.run
        for name, rec in list(run.records.items()):
            if ((rec.status.finished or rec.status is TaskStatus.WAITING) and self._saved.get(name) is not rec.status and rec not in self._pending
                    and name not in self._unsaveable):
                self._pending.append(rec)
        extra = {"status": run.status.value, "finished_at": run.finished_at,
                 "error": None if result is None else result.error}
        # The final checkpoint carries the header along (and gives the lease back) when the
        # store can write them as one: _write does so for the write _ending is set for.
        self._ending = header if header is not None and supports_end_run(self.store) else None
        self._ended = False
        try:
            await self.flush(extra, force=True)
        finally:
            self._ending = None
            await self._settle_prune()
        return self._ended

    async def _settle_prune(self) -> None:
        """Let a background prune finish before the store is closed (bounded)."""
        if self._prune_state == "idle":
            return
        if self._spawn is None:
            await self._prune()
            return
        if self._pruned is not None:
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
            if (rec.status.finished or rec.status is TaskStatus.WAITING) and name not in unsaveable:
                tasks.append(encode_record(rec))
                self._saved[name] = rec.status
        shared = codec.to_jsonable(dict(run.state), "ctx.state")
        self._shared = {}
        self._shared_changes()
        body = {
            "workflow": run.workflow.name, "run_id": run.run_id, "status": run.status.value,
            "started_at": run.first_started_at, "resumes": run.resumes, "trigger": run.trigger,
            "order": run.workflow.task_names,
            "input": codec.to_jsonable(run.input, "the run's input"),
            "shared": shared,
            "tasks": tasks,
        }
        if extra:
            body.update(extra)
        return body

    def _payload(self, kind: str, body: dict[str, Any]) -> bytes:
        """The sealed payload of a checkpoint; StateError naming what cannot be encoded.

        Encrypted under a key derived for this run (``bind``), so a checkpoint copied into
        another run's rows does not decrypt there.
        """
        data = {"v": PAYLOAD_VERSION, "kind": kind, **body}
        try:
            raw = codec.dumps(data, f"a checkpoint of run {self.run.run_id!r}")
        except StateError:
            # Rare (values are checked as they are encoded): name the culprit when possible.
            for t in body.get("tasks", ()):
                codec.dumps(t, f"the output of task {t.get('name')!r}")
            codec.dumps(body.get("input"), "the run's input")
            raise
        return codec.seal(raw, bind=self.run.run_id)

    async def _write(self, kind: str, body: dict[str, Any]) -> None:
        run = self.run
        payload = self._payload(kind, body)
        seq = self.seq
        self.seq += 1
        cp = Checkpoint(run_id=run.run_id, seq=seq, kind=kind, payload=payload, created_at=self._clock.time())
        try:
            if self._ending is not None:
                await self._end(self._ending, cp)
            else:
                await self.store.append_checkpoint(cp, fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"checkpoint {seq} of run {run.run_id!r}", exc) from exc
        if kind == "full":
            self._full_bytes, self._delta_bytes = len(payload), 0
        else:
            self._delta_bytes += len(payload)
        run.emit(ev.CHECKPOINT_SAVED, status=run.status.value, seq=seq, checkpoint=kind, size=len(payload),
                 tasks=len(body.get("tasks", ())))


    async def _end(self, header: RunHeader, cp: Checkpoint) -> None:
        """The final checkpoint, the header and the lease's release in one write (``end_run``)."""
        own = self.ownership
        lease = None if own is None else own.lease
        if own is not None:
            own.lease = None  # given back with this write: a renewal from now on finds it gone, no loss
        try:
            await self.store.end_run(header, cp, fence=self.fence, release=lease is not None)  # type: ignore[attr-defined]
        except BaseException:
            if own is not None:
                own.lease = lease  # not given back: released as usual
            raise
        self._ending = None
        self._ended = True


def _keyed(encoded: dict[Any, Any]) -> Any:
    """A dict of already encoded values, its keys encoded the way ``codec.to_jsonable`` does:
    as it is when every key is a string, else as tagged (key, value) pairs."""
    if codec.TAG not in encoded and all(type(k) is str for k in encoded):
        return encoded
    return {codec.TAG: "dict", "items": [
        [codec.to_jsonable(k, f"ctx.state key {k!r}"), v] for k, v in encoded.items()]}


