"""The store protocol: where run headers and checkpoints are persisted.

Stores are deliberately dumb: the kernel serialises (and, with a key, encrypts) every payload
before it reaches a store, so a store keeps opaque bytes plus a few plain columns to query
by. Drivers are picked by URL scheme: ``memory://`` (in the kernel), ``sqlite://...`` and
``postgresql://...`` (the SQL plugin).

Checkpoints are appended per run with an increasing ``seq``. ``kind`` is ``"full"`` (the
whole state) or ``"delta"`` (only the task records that changed since the previous
checkpoint), so storage grows linearly with tasks. ``load`` returns the checkpoints from
the latest full one on, in order; folding them gives the run's last saved state.

Lifetime: the kernel opens a store when a checkpointed (or history-recording) run starts
and closes it when the run ends; a history query or a resume opens and closes its own. So
``open()`` is called once per run: a driver whose connections are costly should share them
per URL inside the process and make a repeated ``open()`` cheap.

Payloads: checkpoint payloads and run-header payloads are opaque bytes produced by
``pyagent.codec.seal`` (JSON, encrypted when ``PYAGENT_STATE_KEY`` is set). The header
payload is the run's audit record (``pyagent.history``).

Status ``"pending"``: a run recorded (``create_run``) but not started yet, e.g. a webhook
request that was accepted or a cron tick that fired; ``pyagent serve`` starts such runs when
it (re)starts. Its payload also holds the run's input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class RunHeader:
    """The queryable columns of one run, plus its opaque summary payload."""

    run_id: str
    workflow: str
    status: str
    started_at: float
    finished_at: float | None = None
    payload: bytes = b""


@dataclass
class Checkpoint:
    run_id: str
    seq: int
    kind: str  # "full" | "delta"
    payload: bytes
    created_at: float = 0.0


@dataclass
class StoredRun:
    header: RunHeader
    checkpoints: list[Checkpoint] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """What the kernel needs from a store. All methods are coroutines; all are safe to call concurrently."""

    url: str

    async def open(self) -> None:
        """Connect and create or migrate the schema (idempotent). Raise a clear error if unreachable."""

    async def close(self) -> None:
        """Release connections."""

    async def save_run(self, header: RunHeader) -> None:
        """Insert or replace the header of ``header.run_id``."""

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` only if no run ``header.run_id`` exists; True if it was inserted.

        Atomic: of any number of concurrent calls with one run id, from any process sharing
        the store, exactly one returns True. An existing header is never changed. Triggers
        record a run this way before starting it (status ``"pending"``), so a cron tick or an
        idempotency key maps to one run even across restarts and replicas.
        """

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint; ``seq`` increases per run."""

    async def load(self, run_id: str) -> StoredRun | None:
        """The header and the checkpoints from the latest ``full`` one on (ordered by seq), or None."""

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        since: float | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[RunHeader]:
        """Headers matching every given filter, newest first."""

    async def prune(self, run_id: str, keep: int) -> int:
        """Keep the last ``keep`` checkpoints of a run and every older one back to the full checkpoint
        they build on (a delta needs each checkpoint before it); return how many were deleted."""
