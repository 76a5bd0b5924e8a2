"""Questions a run asks people, kept in a store: asking, answering, timing out, listing.

A run's questions live in its store (the one it checkpoints to), one row each, apart from its
checkpoints: see the store protocol. A run with no store keeps them in a store private to the
process (``local_store``), so such a run can only be answered from its own process.

:class:`Desk` is what a run asks through: it caches the run's rows, writes new questions under
the run's lease, applies timeouts, and tells the run's waiting tasks when something changed.
:func:`record_answer` is what answering goes through, from any process and without the run's
lease: it refuses ids that are not pending in that run and answers that do not match the
question's schema, and records the rest before anything else happens.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import weakref
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.durability import codec
from pyagent.durability.store import InterruptRecord
from pyagent.durability.stores import safe_url, store_failure
from pyagent.errors import (
    AnswerValidationError,
    ConfigurationError,
    InterruptAnsweredError,
    InterruptNotFoundError,
    PyAgentError,
    StateError,
)
from pyagent.model.interrupts import (
    ANSWERED,
    BY_TIMEOUT,
    ESCALATED,
    EXPIRED,
    PENDING,
    Interrupt,
    escalated,
    jsonable_answer,
    validate_answer,
)
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.clock import Clock
    from pyagent.durability.store import Store
    from pyagent.plugins import Runtime

log = logging.getLogger("pyagent.interrupts")

#: How often a waiting run looks in its store for answers given by other processes (seconds).
#: Answers given in the same process wake it at once.
POLL_SECONDS = 0.5


def new_interrupt_id() -> str:
    """128 random bits: an id nobody can guess, so only those who were shown it can answer."""
    return secrets.token_hex(16)


# -- encoding ---------------------------------------------------------------------------------


def encode(interrupt: Interrupt) -> InterruptRecord:
    """The store row of a question (question and answer sealed like every payload)."""
    body = {"question": interrupt.question, "schema": interrupt.schema, "timeout": interrupt.timeout,
            "on_timeout": interrupt.on_timeout, "default": interrupt.default,
            "escalate_to": interrupt.escalate_to, "escalates": interrupt.escalates,
            "metadata": interrupt.metadata, "key": interrupt.key, "occurrence": interrupt.occurrence}
    answer = None if interrupt.status == PENDING else codec.seal(codec.dumps(interrupt.answer, "the answer"))
    return InterruptRecord(
        id=interrupt.id, run_id=interrupt.run_id, workflow=interrupt.workflow, task=interrupt.task,
        position=interrupt.position, level=interrupt.level, status=interrupt.status,
        asked_at=interrupt.asked_at, deadline=interrupt.deadline,
        payload=codec.seal(codec.dumps(body, f"the question of task {interrupt.task!r}")), answer=answer,
        answered_by=interrupt.answered_by, answered_at=interrupt.answered_at)


def decode(row: InterruptRecord, where: str, *, allow_plaintext: bool | None = None) -> Interrupt:
    """A stored row as an :class:`Interrupt`; StateError when it cannot be read here."""
    what = f"question {row.id} of run {row.run_id!r} in {where}"
    body = codec.loads(codec.unseal(row.payload, what, allow_plaintext=allow_plaintext), what)
    if not isinstance(body, dict):
        raise StateError(f"{what} is damaged: not a question")
    answer = None
    if row.answer is not None:
        answer = codec.loads(codec.unseal(row.answer, f"the answer to {what}", allow_plaintext=allow_plaintext),
                             f"the answer to {what}")
    try:
        return Interrupt(
            id=row.id, run_id=row.run_id, workflow=row.workflow, task=row.task, position=row.position,
            level=row.level, status=row.status, question=body.get("question", ""),
            schema=body.get("schema") or {}, asked_at=row.asked_at, deadline=row.deadline,
            timeout=body.get("timeout"), on_timeout=body.get("on_timeout") or "fail",
            default=body.get("default"), escalate_to=body.get("escalate_to"), escalates=body.get("escalates"),
            metadata=body.get("metadata") or {}, key=body.get("key"), occurrence=body.get("occurrence") or 0,
            answer=answer, answered_by=row.answered_by,
            answered_at=row.answered_at)
    except Exception as exc:
        raise StateError(f"{what} is damaged: {type(exc).__name__}: {str(exc)[:200]}") from None


def supports_interrupts(store: Any) -> bool:
    return all(callable(getattr(store, name, None))
               for name in ("ask_interrupt", "resolve_interrupt", "get_interrupt", "list_interrupts"))


def _require(store: Any) -> None:
    if not supports_interrupts(store):
        raise ConfigurationError(
            f"the store {safe_url(getattr(store, 'url', '?'))} cannot keep questions for people (it has no "
            "ask_interrupt/resolve_interrupt/get_interrupt/list_interrupts): upgrade its plugin, or use "
            "a store that has them (memory://, sqlite://, postgresql://)")


# -- this process: runs without a store, and who is waiting here ------------------------------

_local: weakref.WeakKeyDictionary[Runtime, str] = weakref.WeakKeyDictionary()
_local_lock = threading.Lock()


def local_url(runtime: Runtime) -> str:
    """The URL of the process-local store that keeps the questions of runs without a store."""
    with _local_lock:
        url = _local.get(runtime)
        if url is None:
            url = _local[runtime] = f"memory://pyagent-questions-{secrets.token_hex(6)}"
        return url


class _Watchers:
    """Runs waiting for answers in this process: answering here wakes them at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, list[tuple[anyio.Event, int]]] = {}
        self.held: dict[str, int] = {}  # run id -> how many of its tasks wait here

    def event(self, run_id: str) -> anyio.Event:
        event = anyio.Event()
        with self.lock:
            self.events.setdefault(run_id, []).append((event, threading.get_ident()))
        return event

    def drop(self, run_id: str, event: anyio.Event) -> None:
        with self.lock:
            waiters = self.events.get(run_id)
            if waiters is None:
                return
            waiters[:] = [(e, t) for e, t in waiters if e is not event]
            if not waiters:
                del self.events[run_id]

    def notify(self, run_id: str) -> None:
        """Wake the run's waiting tasks (those on this thread at once; others poll within POLL_SECONDS)."""
        here = threading.get_ident()
        with self.lock:
            waiters = list(self.events.get(run_id, ()))
        for event, thread in waiters:
            if thread == here:
                event.set()

    def hold(self, run_id: str, delta: int) -> None:
        with self.lock:
            count = self.held.get(run_id, 0) + delta
            if count > 0:
                self.held[run_id] = count
            else:
                self.held.pop(run_id, None)


watchers = _Watchers()


def held_here(run_id: str) -> bool:
    """Whether a task of ``run_id`` is waiting for an answer in this process, which continues it."""
    with watchers.lock:
        return run_id in watchers.held


# -- one run's questions ----------------------------------------------------------------------


class Desk:
    """One run's questions: looked up by ``ctx.interrupt``, polled and timed out while tasks wait.

    ``fence`` is the run's lease token: questions are written only while the run owns itself.
    """

    def __init__(self, store: Store, run_id: str, workflow: str, *, clock: Clock, fence: str | None = None,
                 where: str | None = None, local: bool = False) -> None:
        _require(store)
        self.store = store
        self.run_id = run_id
        self.workflow = workflow
        self.clock = clock
        self.fence = fence
        self.where = where or safe_url(store.url)
        #: The run has no store of its own: only this process can answer it.
        self.local = local
        #: How often waiting tasks look for answers recorded by other processes.
        self.poll_seconds = POLL_SECONDS
        self._chains: dict[tuple[str, int], dict[int, Interrupt]] = {}

    # -- the cache --------------------------------------------------------------------------

    def _keep(self, interrupt: Interrupt) -> Interrupt:
        self._chains.setdefault((interrupt.task, interrupt.position), {})[interrupt.level] = interrupt
        return interrupt

    async def load(self) -> None:
        """Read every question the run asked (a resumed run: what its tasks asked before)."""
        try:
            rows = await self.store.list_interrupts(run_id=self.run_id)
        except Exception as exc:
            raise store_failure(self.store, f"reading the questions of run {self.run_id!r}", exc) from exc
        for row in rows:
            self._keep(decode(row, self.where))

    def places(self, task: str) -> dict[int, tuple[str, int, Interrupt]]:
        """``task``'s questions by position: what identifies the question as first asked (its key,
        else its text) and how often the task had asked it before, and its latest record."""
        out: dict[int, tuple[str, int, Interrupt]] = {}
        for (name, position), chain in self._chains.items():
            if name == task:
                first = chain[min(chain)]
                out[position] = (first.key if first.key is not None else first.question, first.occurrence,
                                 chain[max(chain)])
        return out

    def waiting_on(self, task: str) -> Interrupt | None:
        """The open question ``task`` waits on (its latest question still pending), or None.

        Questions asked by a workflow that runs as ``task`` (``"task/inner task"``) count too.
        """
        nested = f"{task}/"
        for (name, _), chain in self._chains.items():
            if name == task or name.startswith(nested):
                last = chain[max(chain)]
                if last.status == PENDING:
                    return last
        return None

    def asked(self) -> list[Interrupt]:
        return [i for chain in self._chains.values() for i in chain.values()]

    # -- writing ----------------------------------------------------------------------------

    async def ask(self, task: str, position: int, question: dict[str, Any], *, level: int = 0,
                  escalates: str | None = None) -> tuple[Interrupt, bool]:
        """Record a question (or find the one already recorded there); True if this call asked it."""
        now = self.clock.time()
        timeout = question.get("timeout")
        interrupt = Interrupt(
            id=new_interrupt_id(), run_id=self.run_id, workflow=self.workflow, task=task, position=position,
            level=level, status=PENDING, question=question["question"], schema=question.get("schema") or {},
            asked_at=now, deadline=None if timeout is None else now + float(timeout), timeout=timeout,
            on_timeout=question.get("on_timeout") or "fail", default=question.get("default"),
            escalate_to=question.get("escalate_to"), escalates=escalates, metadata=question.get("metadata") or {},
            key=question.get("key"), occurrence=question.get("occurrence") or 0)
        row = encode(interrupt)
        try:
            stored = await self.store.ask_interrupt(row, fence=self.fence)
        except Exception as exc:
            raise store_failure(self.store, f"recording a question of run {self.run_id!r}", exc) from exc
        if stored.id == row.id:
            return self._keep(interrupt), True
        return self._keep(decode(stored, self.where)), False

    async def refresh(self, interrupt: Interrupt) -> Interrupt:
        """The question as stored now (answered by someone meanwhile?)."""
        try:
            row = await self.store.get_interrupt(interrupt.id)
        except Exception as exc:
            raise store_failure(self.store, f"reading question {interrupt.id}", exc) from exc
        if row is None:
            return interrupt
        if row.status == interrupt.status:
            return interrupt
        return self._keep(decode(row, self.where))

    async def time_out(self, interrupt: Interrupt) -> tuple[str, Interrupt]:
        """Apply the timeout policy of a question past its deadline.

        Returns what happened (``answered``: the default; ``expired``; ``escalated``: the
        returned question replaces it; or ``raced``: someone answered first) and the question
        the task now waits on or reads.
        """
        now = self.clock.time()
        if interrupt.escalate_to:
            status, answer, value = ESCALATED, None, None
        elif interrupt.on_timeout == "default":
            status, value = ANSWERED, interrupt.default
            answer = codec.seal(codec.dumps(value, "the default answer"))
        else:
            status, answer, value = EXPIRED, None, None
        try:
            done = await self.store.resolve_interrupt(interrupt.id, status=status, answer=answer,
                                                      answered_by=BY_TIMEOUT, answered_at=now)
        except Exception as exc:
            raise store_failure(self.store, f"timing out question {interrupt.id}", exc) from exc
        if not done:
            fresh = await self.refresh(interrupt)
            if fresh.status == ESCALATED:  # escalated by an earlier owner that died before asking on
                return ESCALATED, await self.escalate(fresh)
            return "raced", fresh
        resolved = self._keep(interrupt.model_copy(update={
            "status": status, "answer": value, "answered_by": BY_TIMEOUT, "answered_at": now}))
        if status == ESCALATED:
            return ESCALATED, await self.escalate(resolved)
        return status, resolved

    async def escalate(self, interrupt: Interrupt) -> Interrupt:
        """Ask the question an escalated one names (or find it asked already)."""
        nxt = escalated({"escalate_to": interrupt.escalate_to}, interrupt.schema)
        asked, _ = await self.ask(interrupt.task, interrupt.position, nxt, level=interrupt.level + 1,
                                  escalates=interrupt.id)
        return asked

    # -- waiting ----------------------------------------------------------------------------

    def signal(self) -> anyio.Event:
        """An event set when an answer for this run is recorded in this process."""
        return watchers.event(self.run_id)

    def unsignal(self, event: anyio.Event) -> None:
        watchers.drop(self.run_id, event)

    def hold(self, delta: int) -> None:
        watchers.hold(self.run_id, delta)


# -- answering --------------------------------------------------------------------------------


async def record_answer(store: Store, run_id: str, interrupt_id: str, value: Any, *,
                        answered_by: str | None = None, clock: Clock, where: str | None = None) -> Interrupt:
    """Record ``value`` as the answer to question ``interrupt_id`` of run ``run_id``.

    Refused, with nothing written: an id that is not a question of that run
    (InterruptNotFoundError), a question no longer pending (InterruptAnsweredError), an answer
    that does not match its schema (AnswerValidationError, listing every problem). Needs no
    lease; wakes the run at once when it waits in this process.
    """
    _require(store)
    where = where or safe_url(store.url)
    if not isinstance(interrupt_id, str) or not interrupt_id:
        raise InterruptNotFoundError(f"no question {interrupt_id!r} in run {run_id!r}", run_id=run_id,
                                     interrupt_id=str(interrupt_id))
    try:
        row = await store.get_interrupt(interrupt_id)
    except Exception as exc:
        raise store_failure(store, f"reading question {interrupt_id}", exc) from exc
    if row is None or row.run_id != run_id:
        raise InterruptNotFoundError(
            f"run {run_id!r} in {where} has no question {interrupt_id!r}: answer one of the questions "
            f"`pyagent pending` lists for it", run_id=run_id, interrupt_id=interrupt_id)
    interrupt = decode(row, where)
    if row.status != PENDING:
        raise _not_pending(interrupt)
    await _check_run_goes_on(store, interrupt)
    try:
        answer = jsonable_answer(value)
    except ConfigurationError as exc:
        raise AnswerValidationError(str(exc), run_id=run_id, interrupt_id=interrupt_id, errors=[str(exc)]) from None
    problems = validate_answer(answer, interrupt.schema)
    if problems:
        raise AnswerValidationError(
            f"the answer to {interrupt.question!r} (question {interrupt_id} of run {run_id!r}) does not match "
            f"its schema: {'; '.join(problems)}", run_id=run_id, interrupt_id=interrupt_id, errors=problems)
    now = clock.time()
    who = None if answered_by is None else str(answered_by)
    try:
        done = await store.resolve_interrupt(interrupt_id, status=ANSWERED, answer=codec.seal(codec.dumps(answer)),
                                             answered_by=who, answered_at=now)
    except PyAgentError:
        raise
    except Exception as exc:
        raise store_failure(store, f"recording the answer to question {interrupt_id}", exc) from exc
    if not done:
        fresh = await store.get_interrupt(interrupt_id)
        raise _not_pending(interrupt if fresh is None else decode(fresh, where))
    log.info("run %s: question %s answered by %s", run_id, interrupt_id, who or "someone")
    watchers.notify(run_id)
    return interrupt.model_copy(update={"status": ANSWERED, "answer": answer, "answered_by": who,
                                        "answered_at": now})


async def _check_run_goes_on(store: Store, interrupt: Interrupt) -> None:
    """Refuse an answer to an open question of a run that ended (cancelled or failed while it
    waited, or completed without it): recording it would continue a cancelled run behind the
    back of whoever cancelled it. One read of the run, on the answering path only."""
    try:
        stored = await store.load(interrupt.run_id)
    except Exception as exc:
        raise store_failure(store, f"reading run {interrupt.run_id}", exc) from exc
    if stored is None:
        return
    try:
        status = TaskStatus(stored.header.status)
    except ValueError:  # a status this pyagent does not know: not one it ended
        return
    if not status.finished:
        return
    how = ("nothing waits for its answer" if status in (TaskStatus.COMPLETED, TaskStatus.SKIPPED) else
           "resume the run (pyagent resume, workflow.resume_from) and its task waits on this question again")
    raise InterruptAnsweredError(
        f"question {interrupt.id} of run {interrupt.run_id!r} ({interrupt.question!r}) takes no answer now: its "
        f"run ended ({status.value}) while the question was open; {how}", run_id=interrupt.run_id,
        interrupt_id=interrupt.id)


def _not_pending(interrupt: Interrupt) -> InterruptAnsweredError:
    import time as _time

    when = "" if interrupt.answered_at is None else _time.strftime(
        " at %Y-%m-%d %H:%M:%S", _time.localtime(interrupt.answered_at))
    how = {ANSWERED: f"was already answered by {interrupt.answered_by or 'someone'}{when}",
           EXPIRED: f"expired{when} (it timed out)",
           ESCALATED: f"timed out{when} and was escalated: answer the question it escalated to"}.get(
               interrupt.status, f"is {interrupt.status}")
    return InterruptAnsweredError(f"question {interrupt.id} of run {interrupt.run_id!r} ({interrupt.question!r}) "
                                  f"{how}", run_id=interrupt.run_id, interrupt_id=interrupt.id)


async def list_questions(store: Store, *, run_id: str | None = None, workflow: str | None = None,
                         status: str | None = PENDING, where: str | None = None,
                         allow_plaintext: bool | None = None, limit: int | None = None) -> list[Interrupt]:
    """Questions in ``store`` (pending ones by default), oldest first, at most ``limit`` of them;
    unreadable ones are skipped with a warning."""
    _require(store)
    where = where or safe_url(store.url)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigurationError(f"limit={limit!r} must be a whole number >= 0, or None for every question")
    try:
        rows = await store.list_interrupts(run_id=run_id, workflow=workflow, status=status, limit=limit)
    except Exception as exc:
        raise store_failure(store, "listing questions", exc) from exc
    out = []
    for row in rows:
        try:
            out.append(decode(row, where, allow_plaintext=allow_plaintext))
        except StateError as exc:
            log.warning("%s", exc)
    return out


def answer_text(value: Any) -> str:
    """An answer as the audit trail keeps it: JSON text."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
