"""The default store: keeps runs and checkpoints in process memory (``memory://``)."""

from __future__ import annotations

import threading

from pyagent.durability.store import Checkpoint, RunHeader, StoredRun
from pyagent.errors import CheckpointConflictError


class MemoryStore:
    """An in-process store; every ``memory://NAME`` URL with the same name shares one instance's data."""

    _shared: dict[str, tuple[dict[str, RunHeader], dict[str, list[Checkpoint]]]] = {}
    _lock = threading.Lock()

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        with self._lock:
            self._runs, self._checkpoints = self._shared.setdefault(url, ({}, {}))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def save_run(self, header: RunHeader) -> None:
        self._runs[header.run_id] = header

    async def create_run(self, header: RunHeader) -> bool:
        with self._lock:  # one check-and-set, also across threads sharing this URL
            if header.run_id in self._runs:
                return False
            self._runs[header.run_id] = header
            return True

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        stored = self._checkpoints.setdefault(checkpoint.run_id, [])
        if any(c.seq == checkpoint.seq for c in stored):
            raise CheckpointConflictError(
                f"checkpoint {checkpoint.seq} of run {checkpoint.run_id!r} is already stored in {self.url}: "
                "is another task resuming the same run? Resume a run from one place at a time"
            )
        stored.append(checkpoint)

    async def load(self, run_id: str) -> StoredRun | None:
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
    ) -> list[RunHeader]:
        rows = [
            h
            for h in self._runs.values()
            if (workflow is None or h.workflow == workflow)
            and (since is None or h.started_at >= since)
            and (status is None or h.status == status)
        ]
        rows.sort(key=lambda h: h.started_at, reverse=True)
        return rows[:limit] if limit is not None else rows

    async def prune(self, run_id: str, keep: int) -> int:
        cps = sorted(self._checkpoints.get(run_id, []), key=lambda c: c.seq)
        if len(cps) <= keep:
            return 0
        # A delta builds on every checkpoint back to its full one: keep from the full
        # checkpoint the oldest kept one builds on (nothing can go if there is none).
        start = next((i for i in range(len(cps) - keep, -1, -1) if cps[i].kind == "full"), 0)
        self._checkpoints[run_id] = cps[start:]
        return start
