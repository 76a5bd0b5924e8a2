"""The store protocol: where run headers, checkpoints and run leases are persisted.

Stores are deliberately dumb: the kernel serialises (and, with a key, encrypts) every payload
before it reaches a store, so a store keeps opaque bytes plus a few plain columns to query
by. Drivers are picked by URL scheme: ``memory://`` (in the kernel), ``sqlite://...`` and
``postgresql://...`` (the SQL plugin).

Checkpoints are appended per run with an increasing ``seq``. ``kind`` is ``"full"`` (the
whole state) or ``"delta"`` (only the task records that changed since the previous
checkpoint), so storage grows linearly with tasks. ``load`` returns the checkpoints from
the latest full one on, in order; folding them gives the run's last saved state.

**Ownership.** A run has one owner at a time: whoever holds its *lease*. A lease is a row per
run id (kept apart from the run header, so a run can be claimed before it has one) with the
owner's id, a ``token`` chosen by the claimant, and an expiry. ``claim_run`` takes it
atomically when nobody holds it or the holder's lease has expired; the owner renews it in the
background (``renew_lease``) and gives it back when the run ends (``release_run``). An owner
that dies stops renewing, so its lease expires and the run can be claimed again. Writes made
on behalf of a lease carry its token as ``fence``: a store refuses them (``RunOwnedError``)
once the lease has passed to someone else, so a stalled owner that wakes up after a takeover
cannot overwrite the new owner's progress. Times are epoch seconds from the *caller's* clock
(``now``), so every process sharing a store needs a reasonably synchronised clock; leases
last many times the expected skew.

Lifetime: the kernel opens a store when a checkpointed (or history-recording) run starts
and closes it when the run ends; a history query or a resume opens and closes its own. So
``open()`` is called once per run: a driver whose connections are costly should share them
per URL inside the process and make a repeated ``open()`` cheap.

Payloads: checkpoint payloads and run-header payloads are opaque bytes produced by
``pyagent.durability.codec.seal`` (JSON with a checksum, or encrypted when ``PYAGENT_STATE_KEY`` is
set). The header payload is the run's audit record (``pyagent.history``).

Errors: a store raises the kernel's error types (``StoreError`` or a subclass for a failed
read or write, ``CheckpointConflictError``, ``RunOwnedError``), with messages that name the
store and never carry the data written: task outputs must not leak into errors or logs.

Status ``"pending"``: a run recorded (``create_run``) but not started yet, e.g. a webhook
request that was accepted or a cron tick that fired; ``pyagent serve`` starts such runs when
it (re)starts. Its payload also holds the run's input. Status ``"waiting"``: a run whose
unfinished tasks all wait for answers to questions (interrupts); see below.

**Interrupts.** A question a run asks a person (``ctx.interrupt``) is a row of its own, apart
from the run's header and checkpoints: the run's owner writes it (``ask_interrupt``, fenced
like every write of the run), and *anyone* answers it (``resolve_interrupt``, no lease: the
answering process is usually not the one running the run). A row is identified by a random
``id`` and, within its run, by ``(task, position, level)``: the task that asked it, which of
the task's questions it is, and how many times it was escalated. Its ``status`` moves once,
atomically, from ``pending`` to ``answered``, ``expired`` or ``escalated``; an answer for a row
that is not pending changes nothing, so a replayed answer cannot overwrite the first. The
question (``payload``) and the answer are opaque bytes the kernel sealed.

**Run queue** (optional: a store offers it when it has callable ``dequeue_runs``,
``request_cancel`` and ``cancel_requests``; see :class:`RunQueue` and :func:`supports_queue`).
The queue is the runs table itself: a ``pending`` run is queued, and a ``running`` run whose
lease expired (or that has none) is an orphan whose owner died. ``pyagent serve`` replicas
sharing the store take ready runs in batches with ``dequeue_runs``, each claim taking the run's
lease (the same lease row as ``claim_run``), so renewal, fencing and takeover work as above.
"Active" runs of a workflow are those holding a live lease, however they started; a workflow's
``max_active_runs`` bounds them across every process sharing the store. A cancel request
(``request_cancel``) is a row of its own: a run nobody holds is cancelled at once; a run that is
held is stopped by its owner at its next task boundary (the owner polls ``cancel_requests``);
a run with a request is never dequeued again. Stores without these methods still serve, one
process per store: the kernel then starts recorded runs itself.
**Shared circuit breakers** (optional: :class:`BreakerStore`). A workflow whose breaker is
``shared`` keeps its state in one row per workflow name (:class:`BreakerRecord`), so every
process running it through the store counts failures together and sees it open at once. The
store only reads a row (``get_breaker``) and replaces it by compare-and-swap
(``swap_breaker``: written only if the stored ``version`` is the one the caller read); the
kernel runs the state machine (``pyagent.engine.resilience``) and retries on a lost swap.
Stores without these methods cannot share a breaker; a breaker that is not shared never
calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable


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


@dataclass(frozen=True)
class Lease:
    """Who owns a run, until when: one row per claimed run.

    ``token`` identifies one claim (the claimant picks it, unique per claim); writes fenced
    with it are accepted only while this claim holds the lease. ``claimed_at`` is when the
    claim was made, ``expires_at`` when it runs out unless renewed (epoch seconds).
    """

    run_id: str
    owner: str
    token: str
    claimed_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class Claim:
    """A run taken off the queue: its header as it stood when claimed, and the lease now held.

    ``header.status`` is ``"pending"`` (recorded, maybe suspended: its checkpoints, or else its
    payload's input, say where to start) or ``"running"`` (an orphan: resume it from its
    checkpoints).
    """

    header: RunHeader
    lease: Lease


@dataclass
class InterruptRecord:
    """One question a run asked, as stored: the plain columns plus two sealed payloads.

    ``status`` is ``pending``, ``answered``, ``expired`` or ``escalated``; ``payload`` holds the
    question (its text, the answer's JSON schema, timeout policy); ``answer`` the answer once
    there is one. Times are epoch seconds; ``deadline`` None means no timeout.
    """

    id: str
    run_id: str
    workflow: str
    task: str
    position: int
    level: int
    status: str
    asked_at: float
    deadline: float | None
    payload: bytes
    answer: bytes | None = None
    answered_by: str | None = None
    answered_at: float | None = None


@runtime_checkable
class Store(Protocol):
    """What the kernel needs from a store. All methods are coroutines; all are safe to call concurrently.

    A store may also be a run queue: ``dequeue_runs``, ``request_cancel`` and
    ``cancel_requests``, documented on :class:`RunQueue`. They are optional (not members of
    this protocol): the kernel looks for them with ``callable(getattr(store, name, None))``.
    """

    url: str

    async def open(self) -> None:
        """Connect and create or migrate the schema (idempotent). Raise a clear error if unreachable."""

    async def close(self) -> None:
        """Release connections."""

    async def save_run(self, header: RunHeader, *, fence: str | None = None) -> None:
        """Insert or replace the header of ``header.run_id``.

        With ``fence`` (a lease token) the write happens only if that claim still holds the
        run's lease, checked in the same statement or transaction and holding the lease row
        until the write commits (so a takeover cannot slip in between); otherwise nothing is
        written and ``RunOwnedError`` is raised.
        """

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` only if no run ``header.run_id`` exists; True if it was inserted.

        Atomic: of any number of concurrent calls with one run id, from any process sharing
        the store, exactly one returns True. An existing header is never changed. Triggers
        record a run this way before starting it (status ``"pending"``), so a cron tick or an
        idempotency key maps to one run even across restarts and replicas.
        """

    async def append_checkpoint(self, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Append one checkpoint; ``seq`` increases per run.

        A checkpoint with the same (run_id, seq) already stored raises
        ``CheckpointConflictError`` and changes nothing. ``fence``: as for :meth:`save_run`.
        """

    async def begin_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Save ``header`` and append ``checkpoint`` (a run's first) in one transaction.

        Either both are stored or neither is: a process killed in between never leaves a run
        that has a header but no checkpoint to resume from. Raises like :meth:`save_run` and
        :meth:`append_checkpoint`; on any error nothing is written.
        """

    async def load(self, run_id: str) -> StoredRun | None:
        """The header and the checkpoints from the latest ``full`` one on (ordered by seq), or None."""

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
        """Headers matching every given filter, newest first (``started_at``, then ``run_id``, descending).

        ``since``/``until``: started at or after ``since``, strictly before ``until`` (epoch
        seconds). ``offset`` skips that many matching headers before ``limit`` applies, in the
        query itself, so a page of a large store is read without loading the rest.
        """

    async def prune(self, run_id: str, keep: int) -> int:
        """Keep the last ``keep`` checkpoints of a run and every older one back to the full checkpoint
        they build on (a delta needs each checkpoint before it); return how many were deleted.

        Called in the background while the run goes on: it must not hold a lock that keeps
        the run's checkpoint writes waiting for longer than one short statement.
        """

    # -- ownership --------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: str, token: str, *, now: float, ttl: float,
                        replace: str | None = None) -> Lease:
        """Take the lease of ``run_id`` for ``owner``, atomically (one conditional write).

        The claim succeeds when no lease is held, when the held one has expired
        (``expires_at <= now``), when it already carries ``token`` (a retried claim is
        idempotent), or when its token equals ``replace`` (a compare-and-swap, for taking over
        from an owner known to be dead). On success the lease becomes
        ``Lease(run_id, owner, token, claimed_at=now, expires_at=now + ttl)``.

        Returns the lease as it stands after the call: ``lease.token == token`` means this
        claim holds it; anything else is the current holder's lease, left unchanged. The run
        need not exist: a fresh run is claimed before its header is written.
        """

    async def renew_lease(self, run_id: str, token: str, *, now: float, ttl: float) -> bool:
        """Extend the lease to ``now + ttl`` if claim ``token`` still holds it.

        True if renewed. A lease that expired but that nobody has claimed since is still the
        caller's and is renewed. False means the lease was released or taken over: the caller
        no longer owns the run and must stop.
        """

    async def release_run(self, run_id: str, token: str) -> bool:
        """Give up the lease if claim ``token`` holds it (the run may be claimed at once).

        True if it was held and is now released; False if it was not held by ``token``
        (nothing is changed).
        """

    async def get_lease(self, run_id: str) -> Lease | None:
        """The lease of ``run_id`` as stored (possibly expired), or None when nobody holds it."""

    async def list_leases(self, *, owner: str | None = None, expired_at: float | None = None,
                          limit: int | None = None) -> list[Lease]:
        """Leases held, soonest expiry first: those of ``owner``, and/or those already expired
        at ``expired_at`` (``expires_at <= expired_at``: runs whose owner stopped renewing, to
        be taken over). A lease may exist for a run that has no header yet."""

    # -- interrupts ---------------------------------------------------------------------------

    async def ask_interrupt(self, record: InterruptRecord, *, fence: str | None = None) -> InterruptRecord:
        """Insert ``record`` unless its run already has a row for ``(task, position, level)``;
        return the row as stored (the existing one, with its own id, when there was one).

        Atomic: of concurrent calls for one ``(run_id, task, position, level)`` exactly one row
        results. ``fence``: as for :meth:`save_run` (RunOwnedError, nothing written).
        """

    async def resolve_interrupt(self, interrupt_id: str, *, status: str, answer: bytes | None,
                                answered_by: str | None, answered_at: float) -> bool:
        """Set ``status`` (``answered``, ``expired`` or ``escalated``), ``answer``, ``answered_by``
        and ``answered_at`` of a row, only if it is ``pending``: one conditional write.

        True if this call resolved it; False if there is no such row or it was resolved
        already (nothing is changed). Needs no lease.
        """

    async def get_interrupt(self, interrupt_id: str) -> InterruptRecord | None:
        """The row with this id, or None."""

    async def list_interrupts(self, *, run_id: str | None = None, workflow: str | None = None,
                              status: str | None = None, limit: int | None = None) -> list[InterruptRecord]:
        """Rows matching every given filter, oldest question first (``asked_at``, then ``level``, then id)."""


class RunQueue(Protocol):
    """The optional run-queue methods of a store (see the module docstring).

    The kernel checks for them with ``callable(getattr(store, "dequeue_runs", None))`` (and the
    two others, :func:`supports_queue`), so a store without them keeps working: it is not a
    queue, and ``pyagent serve`` starts the runs it records itself.
    """

    async def dequeue_runs(self, owner: str, *, now: float, ttl: float, limit: int,
                           workflows: Mapping[str, int | None]) -> list[Claim]:
        """Claim up to ``limit`` ready runs, oldest ``started_at`` first (then run_id), atomically.

        Ready: status ``pending`` or ``running``, workflow in ``workflows``, no lease row or an
        expired one (``expires_at <= now``), and no cancel request recorded. ``workflows`` maps
        each workflow name the caller serves to its ``max_active_runs`` (None: unbounded): a run
        of workflow w is claimed only while fewer than ``max_active`` runs of w hold a live
        lease, counting the ones this call claims. Each claimed run gets the lease
        ``Lease(run_id, owner, token, now, now + ttl)`` with a fresh random token chosen by the
        store (``secrets.token_hex(16)``).

        Concurrent calls from any number of processes never claim one run twice and never let
        a workflow exceed ``max_active`` live leases. Returns [] quickly when nothing is ready;
        ``limit`` < 1 or an empty ``workflows`` returns [].
        """
        ...

    async def request_cancel(self, run_id: str, *, reason: str, now: float) -> str | None:
        """Ask that run ``run_id`` be cancelled, atomically; needs no lease.

        - a ``pending``, ``running`` or ``waiting`` run that holds no live lease: its header's
          status becomes ``cancelled`` and ``finished_at`` ``now`` (payload unchanged) and the
          request is recorded: returns ``"cancelled"``;
        - a run holding a live lease: the request (reason, now) is recorded for its owner to act
          on at its next task boundary: returns ``"requested"``;
        - a run that has ended (``completed``, ``failed``, ``cancelled``, ``skipped``): nothing
          changes: returns ``"finished"``;
        - no such run: returns None.

        Recording a request twice keeps the first one.
        """
        ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Of ``run_ids``, those with a cancel request recorded: run id -> reason (one query)."""
        ...


class RunEnd(Protocol):
    """An optional store method: a run's final writes in one step (see :func:`supports_end_run`)."""

    async def end_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None,
                      release: bool = False) -> None:
        """Append ``checkpoint`` (a run's last) and save ``header`` in one transaction; with
        ``release`` also give up the lease whose token is ``fence``, in the same transaction.

        All or nothing, like :meth:`Store.begin_run`: a process killed meanwhile leaves the
        run as it was before the call. Raises like :meth:`Store.save_run` (``fence``) and
        :meth:`Store.append_checkpoint` (``seq``); on any error nothing is written and the
        lease stays held. The kernel ends a checkpointed run with one such write where a store
        has it (one commit instead of three), else with the three calls.
        """
        ...


class QueueStore(Store, RunQueue, Protocol):
    """A store that is a run queue too."""


def supports_queue(store: Any) -> TypeGuard[QueueStore]:
    """Whether ``store`` is a run queue (has the :class:`RunQueue` methods)."""
    return all(callable(getattr(store, name, None))
               for name in ("dequeue_runs", "request_cancel", "cancel_requests"))


def supports_end_run(store: Any) -> bool:
    """Whether ``store`` writes a run's end in one step (has :meth:`RunEnd.end_run`)."""
    return callable(getattr(store, "end_run", None))


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be a workflow name or run id in every store (None if it can).

    Names and run ids are text columns: PostgreSQL refuses NUL characters in text, and no
    UTF-8 database can hold a lone surrogate. The rule is the same for every store, so a
    workflow that runs on ``memory://`` or SQLite also runs on PostgreSQL.
    """
    if "\x00" in text:
        return "contains a NUL character (\\x00), which stores cannot keep in a name"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid UTF-8 and cannot be stored"
    return None


# -- shared circuit breakers (optional) ---------------------------------------------------------


@dataclass(frozen=True)
class BreakerRecord:
    """A shared circuit breaker's state as stored: one row per workflow name (``name``).

    ``state`` is ``closed``, ``open`` or ``half_open``; ``generation`` counts transitions (an
    outcome from a run admitted under an older one is ignored); ``failures``: consecutive
    failed runs while closed; ``opened_at``: when it last opened; ``trials`` / ``trials_ok``:
    trial runs in flight / succeeded while half-open, given up at ``trial_deadline``;
    ``times_opened``: how often it opened; ``updated_at``: when it was written. Times are
    epoch seconds from the writer's clock. ``version`` is bumped by every write: the
    compare-and-swap key.
    """

    name: str
    state: str
    generation: int
    failures: int
    opened_at: float | None
    trials: int
    trials_ok: int
    trial_deadline: float | None
    times_opened: int
    updated_at: float
    version: int


@runtime_checkable
class BreakerStore(Protocol):
    """The store methods a shared circuit breaker needs (optional: a store may lack them)."""

    async def get_breaker(self, name: str) -> BreakerRecord | None:
        """The breaker row of ``name``, or None when there is none yet (a closed breaker)."""

    async def swap_breaker(self, record: BreakerRecord, *, expected: int) -> bool:
        """Store ``record`` only if the row of ``record.name`` still has version ``expected``
        (0: only if there is no row yet); True if this call wrote it.

        One conditional write (``UPDATE ... WHERE version = expected``, or an insert that does
        nothing when the row exists): of concurrent calls expecting one version, from any
        process sharing the store, at most one returns True. ``record.version`` is
        ``expected + 1``. Needs no lease.
        """


def shares_breakers(store: object) -> bool:
    """Whether ``store`` can keep a shared circuit breaker (has ``get_breaker`` and ``swap_breaker``)."""
    return all(callable(getattr(store, name, None)) for name in ("get_breaker", "swap_breaker"))
