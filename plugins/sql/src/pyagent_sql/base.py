"""The store objects the kernel holds: cheap handles on a shared ``Backend``.

``open`` takes a reference on the database's backend (starting it on first use) and checks
the schema version; ``close`` gives the reference back. Calls on a store that is not open
open it first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pyagent.plugin import (
    BreakerRecord,
    Checkpoint,
    Claim,
    InterruptRecord,
    Lease,
    PyAgentError,
    RunHeader,
    RunOwnedError,
    StoredRun,
    StoreError,
)

from .backend import Backend, Fenced, acquire, release
from .errors import CheckpointConflictError, describe

T = TypeVar("T")


class SQLStore:
    """A ``pyagent.store.Store`` on a SQLAlchemy async engine; subclasses pick the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backend: Backend | None = None
        self._guard = threading.Lock()

    # -- what a database provides -----------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL as it may be shown: never with a password."""
        return self.url

    def _key(self) -> Hashable:
        raise NotImplementedError

    def _make_backend(self) -> Backend:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (sharing the process's connections to this database) and check the schema."""
        if self._backend is not None:
            return
        backend = await acquire(self._key(), self._make_backend)
        with self._guard:
            if self._backend is None:
                self._backend = backend
                return
        await release(backend)  # a concurrent open() of this store won

    async def close(self) -> None:
        """Give the connections back; the store may be opened again later."""
        with self._guard:
            backend, self._backend = self._backend, None
        if backend is not None:
            await release(backend)

    async def _ready(self) -> Backend:
        backend = self._backend
        if backend is None:
            await self.open()
            backend = self._backend
            assert backend is not None
        return backend

    async def __aenter__(self) -> SQLStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Store protocol -------------------------------------------------------------

    async def _call(self, action: str, run_id: str, call: Callable[[], Awaitable[T]],
                     checkpoint: Checkpoint | None = None) -> T:
        """Run ``call`` and turn driver errors into the kernel's: no parameter values in messages."""
        try:
            return await call()
        except Fenced:
            raise await self._owned(run_id) from None
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            if checkpoint is None:
                raise self._failure(action, exc) from None
            raise self._conflict(checkpoint) from None
        except PyAgentError:
            raise
        except Exception as exc:
            raise self._failure(action, exc) from None

    def _failure(self, action: str, exc: BaseException) -> PyAgentError:
        backend = self._backend
        if backend is None:
            return StoreError(f"{action} in {self.display_url} failed: {describe(exc)}")
        return backend.failure(action, exc)

    async def _owned(self, run_id: str) -> RunOwnedError:
        lease = None
        with contextlib.suppress(Exception):
            lease = await self.get_lease(run_id)
        holder = (f"its lease is held by {lease.owner}" if lease is not None
                  else "its lease was released")
        return RunOwnedError(
            f"run {run_id!r} in {self.display_url} is no longer owned by this process ({holder}): "
            "the write was refused", run_id=run_id, owner=None if lease is None else lease.owner,
            expires_at=None if lease is None else lease.expires_at,
        )

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` unless its run id exists (``ON CONFLICT DO NOTHING``); True if inserted."""
        params = run_params(header)
        backend = await self._ready()
        return bool(await self._call(f"recording run {header.run_id!r}", header.run_id,
                                     lambda: backend.run(backend.create_run, params)))

    async def save_run(self, header: RunHeader, *, fence: str | None = None) -> None:
        """Insert or replace the header of ``header.run_id`` (only under lease ``fence`` if given)."""
        params = run_params(header)
        backend = await self._ready()
        await self._call(f"saving the header of run {header.run_id!r}", header.run_id,
                          lambda: backend.run(backend.save_run, params, fence))

    async def append_checkpoint(self, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = checkpoint_params(checkpoint)
        backend = await self._ready()
        await self._call(f"writing checkpoint {checkpoint.seq} of run {checkpoint.run_id!r}",
                          checkpoint.run_id, lambda: backend.run(backend.append, params, fence), checkpoint)

    async def begin_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Save the header and the first checkpoint in one transaction."""
        hp, cp = run_params(header), checkpoint_params(checkpoint)
        backend = await self._ready()
        await self._call(f"starting run {header.run_id!r}", header.run_id,
                          lambda: backend.run(backend.begin_run, hp, cp, fence), checkpoint)

    async def end_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None,
                      release: bool = False) -> None:
        """Append the last checkpoint, save the header and (``release``) give up lease ``fence``,
        in one transaction."""
        hp, cp = run_params(header), checkpoint_params(checkpoint)
        token = release_token(release, fence)
        backend = await self._ready()
        await self._call(f"ending run {header.run_id!r}", header.run_id,
                          lambda: backend.run(backend.end_run, hp, cp, fence, token), checkpoint)

    async def load(self, run_id: str) -> StoredRun | None:
        """The header and the checkpoints from the latest full one on, ordered by seq."""
        backend = await self._ready()
        return await self._call(f"loading run {run_id!r}", run_id, lambda: backend.run(backend.load, run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        since: float | None = None,
        status: str | None = None,
        limit: int | None = None,
        until: float | None = None,
        offset: int = 0,
    ) -> list[RunHeader]:
        """Headers matching every given filter, newest first; ``limit``/``offset`` page in SQL."""
        backend = await self._ready()
        runs = backend.tables.runs
        query = select(runs)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        if until is not None:
            query = query.where(runs.c.started_at < until)
        if status is not None:
            query = query.where(runs.c.status == status)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            query = query.limit(limit)
        if offset:
            if offset < 0:
                raise ValueError(f"offset must be >= 0, got {offset}")
            query = query.offset(offset)
        return await self._call("listing runs", "", lambda: backend.run(backend.list_runs, query))

    async def prune(self, run_id: str, keep: int) -> int:
        """Keep the last ``keep`` checkpoints and the full one they build on; return how many went."""
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number >= 1 (checkpoints to keep per run), got {keep!r}")
        backend = await self._ready()
        return await self._call(f"pruning the checkpoints of run {run_id!r}", run_id,
                                 lambda: backend.run(backend.prune, run_id, keep))

    # -- ownership --------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: str, token: str, *, now: float, ttl: float,
                        replace: str | None = None) -> Lease:
        """Take the run's lease unless another claim holds one that has not expired (one upsert)."""
        if ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        params = {"run_id": run_id, "owner": owner, "token": token, "now": now, "expires_at": now + ttl,
                  "replace": replace}
        backend = await self._ready()
        return await self._call(f"claiming run {run_id!r}", run_id,
                                 lambda: backend.run(backend.claim_run, params))

    async def renew_lease(self, run_id: str, token: str, *, now: float, ttl: float) -> bool:
        """Extend the lease if claim ``token`` still holds it; False when it was lost."""
        params = {"lease_run_id": run_id, "lease_token": token, "new_expires_at": now + ttl}
        backend = await self._ready()
        return await self._call(f"renewing the lease of run {run_id!r}", run_id,
                                 lambda: backend.run(backend.renew_lease, params))

    async def release_run(self, run_id: str, token: str) -> bool:
        """Give the lease up if claim ``token`` holds it."""
        params = {"run_id": run_id, "token": token}
        backend = await self._ready()
        return await self._call(f"releasing run {run_id!r}", run_id,
                                 lambda: backend.run(backend.release_run, params))

    async def get_lease(self, run_id: str) -> Lease | None:
        """The stored lease of ``run_id`` (possibly expired), or None."""
        backend = await self._ready()
        return await self._call(f"reading the lease of run {run_id!r}", run_id,
                                 lambda: backend.run(backend.get_lease, run_id))

    async def list_leases(self, *, owner: str | None = None, expired_at: float | None = None,
                          limit: int | None = None) -> list[Lease]:
        """Leases of ``owner`` and/or expired at ``expired_at``, soonest expiry first."""
        backend = await self._ready()
        leases = backend.tables.leases
        query = select(leases)
        if owner is not None:
            query = query.where(leases.c.owner == owner)
        if expired_at is not None:
            query = query.where(leases.c.expires_at <= expired_at)
        query = query.order_by(leases.c.expires_at, leases.c.run_id)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            query = query.limit(limit)
        return await self._call("listing leases", "", lambda: backend.run(backend.list_leases, query))

    # -- the run queue ------------------------------------------------------------------------

    async def dequeue_runs(self, owner: str, *, now: float, ttl: float, limit: int,
                           workflows: Mapping[str, int | None]) -> list[Claim]:
        """Claim up to ``limit`` ready runs, oldest ``started_at`` first (then run id), atomically.

        Ready: ``pending`` or ``running``, of a workflow in ``workflows``, with no lease or an
        expired one, and no cancel request. ``workflows`` maps each workflow served to its
        ``max_active_runs`` (None: unbounded); a bounded workflow gets runs only while fewer of
        its runs hold a live lease. Each claimed run gets a lease with a fresh random token.
        """
        params = dequeue_params(owner, now=now, ttl=ttl, limit=limit, workflows=workflows)
        if params is None:
            return []
        backend = await self._ready()
        return await self._call("taking runs off the queue", "", lambda: backend.run(backend.dequeue, params))

    async def request_cancel(self, run_id: str, *, reason: str, now: float) -> str | None:
        """Ask that a run be cancelled: ``"cancelled"`` (it held no live lease: marked so now),
        ``"requested"`` (its owner acts on it), ``"finished"`` (it had ended) or None (no such run)."""
        params = {"run_id": run_id, "reason": reason, "requested_at": now}
        backend = await self._ready()
        return await self._call(f"requesting the cancellation of run {run_id!r}", run_id,
                                 lambda: backend.run(backend.request_cancel, params))

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Of ``run_ids``, those with a cancel request recorded: run id -> reason (one query)."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return {}
        backend = await self._ready()
        return await self._call("reading cancel requests", "", lambda: backend.run(backend.cancel_requests, ids))

    # -- interrupts ---------------------------------------------------------------------------

    async def ask_interrupt(self, record: InterruptRecord, *, fence: str | None = None) -> InterruptRecord:
        """Insert the question unless its run has one at (task, position, level); the row as stored."""
        params = interrupt_params(record)
        backend = await self._ready()
        return await self._call(f"recording a question of run {record.run_id!r}", record.run_id,
                                 lambda: backend.run(backend.ask_interrupt, params, fence))

    async def resolve_interrupt(self, interrupt_id: str, *, status: str, answer: bytes | None,
                                answered_by: str | None, answered_at: float) -> bool:
        """Resolve a pending question (one conditional UPDATE); False when it was not pending."""
        if status not in ("answered", "expired", "escalated"):
            raise ValueError(f"status must be 'answered', 'expired' or 'escalated', got {status!r}")
        params = {"interrupt_id": interrupt_id, "new_status": status, "new_answer": answer,
                  "new_answered_by": answered_by, "new_answered_at": answered_at}
        backend = await self._ready()
        return await self._call(f"answering question {interrupt_id!r}", "",
                                 lambda: backend.run(backend.resolve, params))

    async def get_interrupt(self, interrupt_id: str) -> InterruptRecord | None:
        """The question with this id, or None."""
        backend = await self._ready()
        return await self._call(f"reading question {interrupt_id!r}", "",
                                 lambda: backend.run(backend.get_interrupt, interrupt_id))

    async def list_interrupts(self, *, run_id: str | None = None, workflow: str | None = None,
                              status: str | None = None, limit: int | None = None) -> list[InterruptRecord]:
        """Questions matching every given filter, oldest first."""
        backend = await self._ready()
        t = backend.tables.interrupts
        query = select(t)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        if workflow is not None:
            query = query.where(t.c.workflow == workflow)
        if status is not None:
            query = query.where(t.c.status == status)
        query = query.order_by(t.c.asked_at, t.c.level, t.c.id)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            query = query.limit(limit)
        return await self._call("listing questions", "", lambda: backend.run(backend.list_interrupts, query))

    # -- shared circuit breakers ----------------------------------------------------------------

    async def get_breaker(self, name: str) -> BreakerRecord | None:
        """The shared circuit breaker's row of ``name``, or None."""
        backend = await self._ready()
        return await self._call(f"reading the circuit breaker of {name!r}", "",
                                lambda: backend.run(backend.get_breaker, name))

    async def swap_breaker(self, record: BreakerRecord, *, expected: int) -> bool:
        """Replace the breaker's row if its version is still ``expected`` (0: insert it if absent)."""
        params = breaker_params(record, expected)
        backend = await self._ready()
        return await self._call(f"writing the circuit breaker of {record.name!r}", "",
                                lambda: backend.run(backend.swap_breaker, params, expected))

    def _conflict(self, cp: Checkpoint) -> CheckpointConflictError:
        return CheckpointConflictError(
            f"checkpoint {cp.seq} of run {cp.run_id!r} is already stored in {self.display_url}: "
            "is another process resuming the same run? Resume a run from one process at a time"
        )


def release_token(release: bool, fence: str | None) -> str | None:
    """The lease token ``end_run`` gives back (None: none)."""
    if release and fence is None:
        raise ValueError("end_run(release=True) needs the fence: the token of the lease to give back")
    return fence if release else None


def run_params(header: RunHeader) -> dict[str, Any]:
    return {
        "run_id": header.run_id,
        "workflow": header.workflow,
        "status": header.status,
        "started_at": header.started_at,
        "finished_at": header.finished_at,
        "payload": header.payload,
    }


def dequeue_params(owner: str, *, now: float, ttl: float, limit: int,
                   workflows: Mapping[str, int | None]) -> dict[str, Any] | None:
    """The parameters of a dequeue, or None when it can claim nothing (``limit`` < 1, no workflows)."""
    if ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    for name, cap in workflows.items():
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int)):
            raise ValueError(f"max_active for workflow {name!r} must be a whole number or None "
                             f"(unbounded), got {cap!r}")
    if limit < 1 or not workflows:
        return None
    return {"owner": owner, "now": now, "expires_at": now + ttl, "limit": int(limit),
            "workflows": dict(workflows)}


def interrupt_params(record: InterruptRecord) -> dict[str, Any]:
    return {
        "id": record.id, "run_id": record.run_id, "workflow": record.workflow, "task": record.task,
        "position": record.position, "level": record.level, "status": record.status,
        "asked_at": record.asked_at, "deadline": record.deadline, "payload": record.payload,
        "answer": record.answer, "answered_by": record.answered_by, "answered_at": record.answered_at,
    }


def checkpoint_params(cp: Checkpoint) -> dict[str, Any]:
    if cp.kind not in ("full", "delta"):
        raise ValueError(f"checkpoint kind must be 'full' or 'delta', got {cp.kind!r}")
    return {
        "run_id": cp.run_id,
        "seq": cp.seq,
        "kind": cp.kind,
        "payload": cp.payload,
        "created_at": cp.created_at,
    }


def breaker_params(record: BreakerRecord, expected: int) -> dict[str, Any]:
    if not isinstance(expected, int) or expected < 0 or record.version != expected + 1:
        raise ValueError(f"swap_breaker: record.version must be expected + 1 (expected={expected!r}, "
                         f"version={record.version!r})")
    if record.state not in ("closed", "open", "half_open"):
        raise ValueError(f"swap_breaker: state must be 'closed', 'open' or 'half_open', got {record.state!r}")
    return {
        "name": record.name, "state": record.state, "generation": record.generation, "failures": record.failures,
        "opened_at": record.opened_at, "trials": record.trials, "trials_ok": record.trials_ok,
        "trial_deadline": record.trial_deadline, "times_opened": record.times_opened,
        "updated_at": record.updated_at, "version": record.version,
    }
