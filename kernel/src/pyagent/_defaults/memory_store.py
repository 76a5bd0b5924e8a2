"""The default store: keeps runs, checkpoints, leases, interrupts and shared circuit breakers in
process memory (``memory://``)."""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from pyagent.durability.store import (
    BreakerRecord,
    Checkpoint,
    Claim,
    InterruptRecord,
    Lease,
    RunHeader,
    StoredRun,
)
from pyagent.errors import CheckpointConflictError, RunOwnedError

#: Statuses of the runs the queue holds: pending ones, and running ones whose owner may have died.
_QUEUED = ("pending", "running")


class _Runs(dict[str, RunHeader]):
    """Run headers by run id, which also keeps the ids of the runs saved as pending or running:
    what ``dequeue_runs`` looks through instead of every run the store holds. An id stays
    there until a dequeue finds its run ended (however its header was changed)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: dict[str, None] = {}  # ordered like a set

    def __setitem__(self, run_id: str, header: RunHeader) -> None:
        super().__setitem__(run_id, header)
        if header.status in _QUEUED:
            self.queued[run_id] = None

    def update(self, *args: Any, **kwargs: Any) -> None:
        for run_id, header in dict(*args, **kwargs).items():
            self[run_id] = header

    def clear(self) -> None:
        super().clear()
        self.queued.clear()


class _Data:
    """What one ``memory://NAME`` holds; ``lock`` makes each operation atomic across threads."""

    def __init__(self) -> None:
        self.runs = _Runs()
        self.checkpoints: dict[str, list[Checkpoint]] = {}
        self.leases: dict[str, Lease] = {}
        self.interrupts: dict[str, InterruptRecord] = {}
        self.asked: dict[tuple[str, str, int, int], str] = {}  # (run, task, position, level) -> id
        self.cancels: dict[str, tuple[str, float]] = {}  # run id -> (reason, requested at)
        self.breakers: dict[str, BreakerRecord] = {}
        self.lock = threading.RLock()


class MemoryStore:
    """An in-process store; every ``memory://NAME`` URL with the same name shares one instance's data."""

    _shared: dict[str, _Data] = {}
    _lock = threading.Lock()

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        with self._lock:
            data = self._shared.get(url)
            if data is None:
                data = self._shared[url] = _Data()
        self._data = data
        self._runs = data.runs
        self._checkpoints = data.checkpoints
        self._leases = data.leases

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _check_fence(self, run_id: str, fence: str | None) -> None:
        if fence is None:
            return
        lease = self._leases.get(run_id)
        if lease is None or lease.token != fence:
            raise RunOwnedError(
                f"run {run_id!r} in {self.url} is no longer owned by this process "
                f"({'its lease is held by ' + lease.owner if lease is not None else 'its lease was released'}): "
                "the write was refused",
                run_id=run_id, owner=None if lease is None else lease.owner,
                expires_at=None if lease is None else lease.expires_at,
            )

    async def create_run(self, header: RunHeader) -> bool:
        with self._data.lock:  # one check-and-set, also across threads sharing this URL
            if header.run_id in self._runs:
                return False
            self._runs[header.run_id] = header
            return True

    def _check_seq(self, checkpoint: Checkpoint) -> None:
        if any(c.seq == checkpoint.seq for c in self._checkpoints.get(checkpoint.run_id, ())):
            raise CheckpointConflictError(
                f"checkpoint {checkpoint.seq} of run {checkpoint.run_id!r} is already stored in {self.url}: "
                "is another task resuming the same run? Resume a run from one place at a time"
            )

    async def save_run(self, header: RunHeader, *, fence: str | None = None) -> None:
        with self._data.lock:
            self._check_fence(header.run_id, fence)
            self._runs[header.run_id] = header

    async def append_checkpoint(self, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        with self._data.lock:
            self._check_fence(checkpoint.run_id, fence)
            self._check_seq(checkpoint)
            self._checkpoints.setdefault(checkpoint.run_id, []).append(checkpoint)

    async def begin_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        with self._data.lock:
            self._check_fence(header.run_id, fence)
            self._check_seq(checkpoint)
            self._runs[header.run_id] = header
            self._checkpoints.setdefault(checkpoint.run_id, []).append(checkpoint)

    async def end_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None,
                      release: bool = False) -> None:
        if release and fence is None:
            raise ValueError("end_run(release=True) needs the fence: the token of the lease to give back")
        with self._data.lock:
            self._check_fence(header.run_id, fence)
            self._check_seq(checkpoint)
            self._checkpoints.setdefault(checkpoint.run_id, []).append(checkpoint)
            self._runs[header.run_id] = header
            if release:
                del self._leases[header.run_id]  # the fence check found it held by ``fence``

    async def load(self, run_id: str) -> StoredRun | None:
        with self._data.lock:
            header = self._runs.get(run_id)
            if header is None:
                return None
            cps = sorted(self._checkpoints.get(run_id, []), key=lambda c: c.seq)
        start = max((i for i, c in enumerate(cps) if c.kind == "full"), default=0)
        return StoredRun(header, cps[start:])

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
        with self._data.lock:
            headers = list(self._runs.values())
        rows = [
            h
            for h in headers
            if (workflow is None or h.workflow == workflow)
            and (since is None or h.started_at >= since)
            and (until is None or h.started_at < until)
            and (status is None or h.status == status)
        ]
        rows.sort(key=lambda h: (h.started_at, h.run_id), reverse=True)
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    async def prune(self, run_id: str, keep: int) -> int:
        with self._data.lock:
            cps = sorted(self._checkpoints.get(run_id, []), key=lambda c: c.seq)
            if len(cps) <= keep:
                return 0
            # A delta builds on every checkpoint back to its full one: keep from the full
            # checkpoint the oldest kept one builds on (nothing can go if there is none).
            start = next((i for i in range(len(cps) - keep, -1, -1) if cps[i].kind == "full"), 0)
            self._checkpoints[run_id] = cps[start:]
            return start

    # -- ownership --------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: str, token: str, *, now: float, ttl: float,
                        replace: str | None = None) -> Lease:
        with self._data.lock:
            held = self._leases.get(run_id)
            if (held is None or held.expires_at <= now or held.token == token
                    or (replace is not None and held.token == replace)):
                held = Lease(run_id, owner, token, now, now + ttl)
                self._leases[run_id] = held
            return held

    async def renew_lease(self, run_id: str, token: str, *, now: float, ttl: float) -> bool:
        with self._data.lock:
            held = self._leases.get(run_id)
            if held is None or held.token != token:
                return False
            self._leases[run_id] = Lease(run_id, held.owner, token, held.claimed_at, now + ttl)
            return True

    async def release_run(self, run_id: str, token: str) -> bool:
        with self._data.lock:
            held = self._leases.get(run_id)
            if held is None or held.token != token:
                return False
            del self._leases[run_id]
            return True

    async def get_lease(self, run_id: str) -> Lease | None:
        with self._data.lock:
            return self._leases.get(run_id)

    async def list_leases(self, *, owner: str | None = None, expired_at: float | None = None,
                          limit: int | None = None) -> list[Lease]:
        with self._data.lock:
            leases = list(self._leases.values())
        rows = [lease for lease in leases
                if (owner is None or lease.owner == owner)
                and (expired_at is None or lease.expires_at <= expired_at)]
        rows.sort(key=lambda lease: (lease.expires_at, lease.run_id))
        return rows[:limit] if limit is not None else rows

    # -- run queue --------------------------------------------------------------------------

    async def dequeue_runs(self, owner: str, *, now: float, ttl: float, limit: int,
                           workflows: Mapping[str, int | None]) -> list[Claim]:
        if limit < 1 or not workflows:
            return []
        with self._data.lock:  # the check and the claims are one step, also across threads
            active: dict[str, int] = {}
            for lease in self._leases.values():
                header = self._runs.get(lease.run_id)
                if header is not None and lease.expires_at > now:
                    active[header.workflow] = active.get(header.workflow, 0) + 1
            queued = self._data.runs.queued
            candidates = []
            for run_id in list(queued):
                h = self._runs.get(run_id)
                if h is None or h.status not in _QUEUED:
                    del queued[run_id]  # ended (or gone) since it was queued
                    continue
                if (h.workflow in workflows and run_id not in self._data.cancels
                        and (run_id not in self._leases or self._leases[run_id].expires_at <= now)):
                    candidates.append(h)
            ready = sorted(candidates, key=lambda h: (h.started_at, h.run_id))
            claims: list[Claim] = []
            for header in ready:
                bound = workflows[header.workflow]
                if bound is not None and active.get(header.workflow, 0) >= bound:
                    continue
                lease = Lease(header.run_id, owner, secrets.token_hex(16), now, now + ttl)
                self._leases[header.run_id] = lease
                active[header.workflow] = active.get(header.workflow, 0) + 1
                claims.append(Claim(dataclasses.replace(header), lease))
                if len(claims) >= limit:
                    break
            return claims

    async def request_cancel(self, run_id: str, *, reason: str, now: float) -> str | None:
        with self._data.lock:
            header = self._runs.get(run_id)
            if header is None:
                return None
            if header.status not in ("pending", "running", "waiting"):
                return "finished"
            self._data.cancels.setdefault(run_id, (reason, now))
            lease = self._leases.get(run_id)
            if lease is not None and lease.expires_at > now:
                return "requested"
            self._runs[run_id] = dataclasses.replace(header, status="cancelled", finished_at=now)
            return "cancelled"

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        with self._data.lock:
            return {r: self._data.cancels[r][0] for r in run_ids if r in self._data.cancels}

    # -- interrupts ---------------------------------------------------------------------------

    async def ask_interrupt(self, record: InterruptRecord, *, fence: str | None = None) -> InterruptRecord:
        key = (record.run_id, record.task, record.position, record.level)
        with self._data.lock:
            self._check_fence(record.run_id, fence)
            existing = self._data.asked.get(key)
            if existing is not None:
                return dataclasses.replace(self._data.interrupts[existing])
            if record.id in self._data.interrupts:
                raise ValueError(f"interrupt id {record.id!r} is taken in {self.url}")
            self._data.interrupts[record.id] = dataclasses.replace(record)
            self._data.asked[key] = record.id
            return dataclasses.replace(record)

    async def resolve_interrupt(self, interrupt_id: str, *, status: str, answer: bytes | None,
                                answered_by: str | None, answered_at: float) -> bool:
        with self._data.lock:
            row = self._data.interrupts.get(interrupt_id)
            if row is None or row.status != "pending":
                return False
            self._data.interrupts[interrupt_id] = dataclasses.replace(
                row, status=status, answer=answer, answered_by=answered_by, answered_at=answered_at)
            return True

    async def get_interrupt(self, interrupt_id: str) -> InterruptRecord | None:
        with self._data.lock:
            row = self._data.interrupts.get(interrupt_id)
            return None if row is None else dataclasses.replace(row)

    async def list_interrupts(self, *, run_id: str | None = None, workflow: str | None = None,
                              status: str | None = None, limit: int | None = None) -> list[InterruptRecord]:
        with self._data.lock:
            rows = [dataclasses.replace(r) for r in self._data.interrupts.values()
                    if (run_id is None or r.run_id == run_id) and (workflow is None or r.workflow == workflow)
                    and (status is None or r.status == status)]
        rows.sort(key=lambda r: (r.asked_at, r.level, r.id))
        return rows[:limit] if limit is not None else rows

    # -- shared circuit breakers ----------------------------------------------------------------

    async def get_breaker(self, name: str) -> BreakerRecord | None:
        with self._data.lock:
            return self._data.breakers.get(name)

    async def swap_breaker(self, record: BreakerRecord, *, expected: int) -> bool:
        if record.version != expected + 1:
            raise ValueError(f"swap_breaker: record.version must be expected + 1 (expected={expected!r}, "
                             f"version={record.version!r})")
        with self._data.lock:  # one compare-and-swap, also across threads sharing this URL
            held = self._data.breakers.get(record.name)
            if (0 if held is None else held.version) != expected:
                return False
            self._data.breakers[record.name] = record
            return True
