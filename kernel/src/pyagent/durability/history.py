"""The audit trail: one record per workflow execution, with its task attempts, handoffs and
what its policies did (guardrail blocks and replacements, denied tool calls: ``audit``).

Every finished run is kept in process memory (the last ``PYAGENT_HISTORY_LIMIT`` runs,
default 1000, per runtime). When a store is configured (``Orchestrator(store=URL)`` or a
workflow's checkpoint storage) each run's record is also saved there as the run header's
payload, so history survives the process and can be queried with ``pyagent history``.

Records are built lazily: a run only appends its result to a deque, so workflows that never
ask for their history pay (almost) nothing for it.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from pyagent.durability import codec
from pyagent.errors import ConfigurationError, StateError
from pyagent.model.events import CAPABILITY_DENIED
from pyagent.model.tasks import TaskStatus
from pyagent.model.tracebacks import restore_traceback, stored_attempts

if TYPE_CHECKING:
    from pyagent.durability.state import WorkflowState
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.results import TaskResult, WorkflowResult
    from pyagent.plugins import Runtime

HISTORY_VERSION = 1
_STATUSES = [s.value for s in TaskStatus]


class AttemptRecord(BaseModel):
    """One attempt at a task: which agent, when, and the error (with its traceback) if it failed."""

    number: int
    agent: str
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None


class UsageRecord(BaseModel):
    """Tokens (and cost, when priced) of a task's or a run's language-model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost: float | None = None


class ToolCallRecord(BaseModel):
    """One tool call a model agent made: what it asked for and how it ended.

    ``status`` is ``ok``, ``failed`` (the tool raised, or the call was malformed) or
    ``refused`` (a policy or the agent's ``max_tool_calls`` stopped it before it ran);
    ``result`` is the start of what the tool returned.
    """

    agent: str
    tool: str
    call_id: str = ""
    arguments: Any = None
    status: str = "ok"
    started_at: float | None = None
    duration: float | None = None
    result: str | None = None
    error: str | None = None


class TaskRecord(BaseModel):
    """How one task of an execution went. ``traceback`` is its failure's formatted traceback
    (bounded; None when it did not fail, and in records written before tracebacks were kept)."""

    name: str
    status: TaskStatus
    agent: str = ""
    error: str | None = None
    traceback: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    retries: int = 0
    reused: bool = False
    fallback_strategy: str | None = None
    primary_error: str | None = None
    attempts: list[AttemptRecord] = Field(default_factory=list)
    usage: UsageRecord | None = None
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _duration(self) -> TaskRecord:
        # Derived whenever both ends are known, however the record was built (a finished run's
        # summary, or a killed run's progress read back from its checkpoints).
        if self.duration is None and self.started_at is not None and self.finished_at is not None:
            self.duration = self.finished_at - self.started_at
        return self


class HandoffRecord(BaseModel):
    """One handoff between agents during an execution."""

    from_agent: str | None = None
    to_agent: str | None = None
    reason: str | None = None
    timestamp: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    """Something a policy did during an execution: ``kind`` is its event kind (``guardrail.blocked``,
    ``guardrail.replaced``, ``capability.denied``, ...), ``task`` where, ``data`` the details."""

    kind: str
    task: str | None = None
    timestamp: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ExecutionRecord(BaseModel):
    """One execution of a workflow as the audit trail shows it.

    ``timestamp`` is when it first started (a timezone-aware local datetime), ``status`` how it
    ended (``running`` for a run still going or killed before it finished),
    ``tasks_completed``/``tasks_total`` its progress, ``error`` why it failed and ``traceback``
    the failure's formatted traceback (bounded; None in records written before tracebacks
    were kept; a failed task's own is on its :class:`TaskRecord`). A run resumed
    after a crash or a failure stays one record: ``resumes`` lists when it was resumed (epoch
    seconds, in order) and ``duration`` runs from its first start to its end.
    ``unreadable`` says why a stored record could not be read (saved under another
    encryption key, damaged, ...): then only the store's plain columns are shown.
    ``trigger`` is how the run first started, kept across resumes: ``{"kind": "manual"}`` for
    a call, ``{"kind": "cron" | "webhook" | "event", "source": ...}`` for a trigger's run (the
    schedule's name, the webhook's path, the event's name), ``{"kind": "resume"}`` for a run
    resumed from a save that did not keep its origin; None in records written before runs
    kept it.
    """

    run_id: str
    workflow: str
    timestamp: _dt.datetime
    status: TaskStatus
    tasks_completed: int = 0
    tasks_total: int = 0
    error: str | None = None
    traceback: str | None = None
    duration: float | None = None
    started_at: float = 0.0
    finished_at: float | None = None
    resumed: bool = False
    resumes: list[float] = Field(default_factory=list)
    tasks: list[TaskRecord] = Field(default_factory=list)
    handoffs: list[HandoffRecord] = Field(default_factory=list)
    usage: UsageRecord | None = None
    audit: list[AuditRecord] = Field(default_factory=list)
    unreadable: str | None = None
    trigger: dict[str, Any] | None = None

    @classmethod
    def from_payload(cls, blob: bytes, what: str, *, allow_plaintext: bool | None = None) -> ExecutionRecord:
        """Read a run header's payload written by :func:`to_payload`."""
        data = codec.loads(codec.unseal(blob, what, allow_plaintext=allow_plaintext), what)
        if not isinstance(data, dict) or data.get("v") != HISTORY_VERSION:
            raise StateError(f"{what} has an unknown history format: {str(data)[:80]}")
        data.pop("v")
        try:
            return record(data)
        except Exception as exc:  # parsed, but not a record pyagent wrote
            raise StateError(f"{what} is damaged: {type(exc).__name__}: {str(exc)[:200]}") from None


def _local(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts).astimezone()


def _task_dict(rec: TaskResult) -> dict[str, Any]:
    # Plain data (no pydantic) because a run's record is built once per run for every task;
    # compact (defaults left out, a lone implied attempt rebuilt on reading) because it is stored.
    data: dict[str, Any] = {"name": rec.name, "status": rec.status.value, "agent": rec.agent,
                            "started_at": rec.started_at, "finished_at": rec.finished_at}
    if rec._attempts is not None:
        data["attempts"] = stored_attempts([a.to_dict() for a in rec._attempts], rec.traceback)
        data["retries"] = rec.retries
    for key, value in (("error", rec.error_message), ("traceback", rec.traceback),
                       ("fallback_strategy", rec.fallback_strategy),
                       ("primary_error", rec.primary_error)):
        if value is not None:
            data[key] = value
    if rec.reused:
        data["reused"] = True
    if rec.usage is not None:
        data["usage"] = rec.usage.to_dict()
    if rec.tool_calls:
        data["tool_calls"] = [_plain_call(c) for c in rec.tool_calls]
    return data


def _plain_call(entry: dict[str, Any]) -> dict[str, Any]:
    """A tool call as JSON-able data (arguments a model sent are JSON already; anything else is shown)."""
    out = dict(entry)
    args = out.get("arguments")
    if not isinstance(args, (dict, list, str, int, float, bool, type(None))):
        out["arguments"] = repr(args)
    return out


def _expand_task(data: dict[str, Any]) -> dict[str, Any]:
    started, finished = data.get("started_at"), data.get("finished_at")
    out = dict(data)
    if started is not None and finished is not None:
        out["duration"] = finished - started
    if "attempts" not in out:
        ran = started is not None and out.get("status") != TaskStatus.SKIPPED.value
        failed = out.get("error") is not None
        out["attempts"] = [{"number": 1, "agent": out.get("agent", ""), "started_at": started,
                            "finished_at": finished, "error": out.get("error"),
                            "traceback": out.get("traceback") if failed else None}] if ran else []
        return out
    return restore_traceback(out)


def _handoffs(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for h in raw:
        data = dict(h)
        out.append({
            "from_agent": _agent_name(data.pop("from_agent", data.pop("from", None))),
            "to_agent": _agent_name(data.pop("to_agent", data.pop("to", None))),
            "reason": _text(data.pop("reason", None)),
            "timestamp": data.pop("timestamp", None),
            "data": _plain(data),
        })
    return out


def _audit(raw: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    out = []
    for entry in raw:
        data = dict(entry)
        out.append({"kind": str(data.pop("kind", "")), "task": _text(data.pop("task", None)),
                    "timestamp": data.pop("timestamp", None), "data": _plain(data)})
    return out


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in data.items()}


def _agent_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(getattr(value, "name", value))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def summary_of_result(result: WorkflowResult, tasks_total: int,
                      handoffs: list[dict[str, Any]] | None = None,
                      audit: list[dict[str, Any]] | None = None, *,
                      first_started_at: float | None = None,
                      resumes: list[float] | None = None,
                      trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    """The audit record of a finished run, as plain JSON-able data.

    A resumed run is one run: ``first_started_at`` is when it first started (the result's own
    start is this execution's), ``resumes`` when it was resumed; its duration runs from the first start.
    ``trigger`` is how it first started (the run's ``trigger``).
    """
    recs = list(result.tasks.values())
    started = result.started_at if first_started_at is None else first_started_at
    finished = result.finished_at
    summary = {
        "run_id": result.run_id, "workflow": result.workflow, "status": result.status.value,
        "tasks_completed": result.tasks_completed, "tasks_total": tasks_total,
        "error": result.error, "duration": None if finished is None else finished - started,
        "started_at": started, "finished_at": finished, "resumes": list(resumes or []),
        "resumed": bool(resumes) or any(r.reused for r in recs),
        "tasks": [_task_dict(r) for r in recs], "handoffs": _handoffs(handoffs or []),
        "usage": None if result.usage is None else result.usage.to_dict(),
        "audit": _audit(audit or []), "trigger": trigger,
    }
    if result.traceback is not None:  # only a failed run has one: nothing added to the others
        summary["traceback"] = result.traceback
    return summary


def summary_of_run(run: WorkflowRun) -> dict[str, Any]:
    """The audit record of a run still going (saved when it starts, for crash forensics)."""
    recs = list(dict(run.records).values())
    # A run being recorded has started, even if its pattern has not yet been entered.
    status = TaskStatus.RUNNING if run.status is TaskStatus.PENDING else run.status
    return {
        "run_id": run.run_id, "workflow": run.workflow.name, "status": status.value,
        "tasks_completed": sum(1 for r in recs if r.status is TaskStatus.COMPLETED),
        "tasks_total": run.workflow.task_count, "error": None, "duration": None,
        "started_at": run.first_started_at, "finished_at": None, "resumes": list(run.resumes),
        "resumed": bool(run.resumes) or any(r.reused for r in recs),
        "tasks": [_task_dict(r) for r in recs], "handoffs": _handoffs(run.handoffs),
        "usage": None if run.usage is None else run.usage.to_dict(),
        "audit": _audit(list(run.audit_trail)), "trigger": run.trigger,
    }


def to_payload(summary: dict[str, Any]) -> bytes:
    """Bytes for a store's run header (encrypted when a key is set)."""
    return codec.seal(codec.dumps({"v": HISTORY_VERSION, **summary}))


def record(summary: dict[str, Any]) -> ExecutionRecord:
    """An ExecutionRecord from a summary dict."""
    tasks = [_expand_task(t) for t in summary.get("tasks", [])]
    return ExecutionRecord.model_validate(
        {**summary, "tasks": tasks, "timestamp": _local(summary.get("started_at") or 0.0)})


def record_of_result(result: WorkflowResult, tasks_total: int,
                     handoffs: list[dict[str, Any]] | None = None,
                     audit: list[dict[str, Any]] | None = None) -> ExecutionRecord:
    """The audit record of a finished run."""
    return record(summary_of_result(result, tasks_total, handoffs, audit))


def handoff_rows(records: list[ExecutionRecord]) -> list[dict[str, Any]]:
    """Every handoff and every denial of ``records``, one flat JSON-able row each, oldest first.

    A row has ``run_id``, ``workflow``, ``from``, ``to``, ``reason`` (why the handoff was made),
    ``time`` (ISO 8601) and ``timestamp``, ``mode`` (handoff, transfer, route, chain, delegate,
    or ``tool`` for a refused tool call), ``denied`` and ``denial`` (why it was refused),
    ``source`` (the call or team that made it), and ``remote`` (the URL) for a handoff to a
    remote agent: the compliance export of ``pyagent history --handoffs``.
    """
    rows = []
    for rec in records:
        for h in rec.handoffs:
            data = h.data
            row = _row(rec, h.from_agent, h.to_agent, h.reason, h.timestamp, data.get("mode"),
                       bool(data.get("denied", False)), data.get("denial"), data.get("source"))
            if data.get("remote"):  # the work left the process: to a remote (A2A) agent at this URL
                row["remote"] = data["remote"]
            rows.append(row)
        for entry in rec.audit:
            if entry.kind != CAPABILITY_DENIED:
                continue
            data = entry.data
            rows.append(_row(rec, data.get("agent"), data.get("target"), data.get("reason"),
                             entry.timestamp, data.get("mode") or data.get("capability"), True,
                             data.get("denial"), data.get("source", entry.task)))
    rows.sort(key=lambda r: r["timestamp"] if r["timestamp"] is not None else 0.0)
    return rows


def _row(rec: ExecutionRecord, source: Any, target: Any, reason: Any, when: float | None, mode: Any,
         denied: bool, denial: Any, origin: Any) -> dict[str, Any]:
    return {"run_id": rec.run_id, "workflow": rec.workflow, "from": source, "to": target,
            "reason": reason, "time": None if when is None else _local(when).isoformat(),
            "timestamp": when, "mode": mode, "denied": denied, "denial": denial, "source": origin}


# -- the in-memory log ----------------------------------------------------------------------------


class HistoryLog:
    """The last N finished runs of one runtime, kept as results and turned into records on demand."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is None:
            limit = int(os.environ.get("PYAGENT_HISTORY_LIMIT", "1000") or 1000)
        self._entries: deque[tuple[WorkflowResult, int, dict[str, Any]]] = deque(maxlen=max(limit, 1))
        self._lock = threading.Lock()

    def add(self, result: WorkflowResult, tasks_total: int, handoffs: list[dict[str, Any]],
            audit: list[dict[str, Any]] | None = None, *, first_started_at: float | None = None,
            resumes: list[float] | None = None, trigger: dict[str, Any] | None = None) -> None:
        facts = {"handoffs": handoffs, "audit": audit or [], "first_started_at": first_started_at,
                 "resumes": resumes, "trigger": trigger}
        with self._lock:
            self._entries.append((result, tasks_total, facts))

    def records(self) -> list[ExecutionRecord]:
        with self._lock:
            entries = list(self._entries)
        return [record(summary_of_result(r, total, **facts)) for r, total, facts in entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_logs: weakref.WeakKeyDictionary[Runtime, HistoryLog] = weakref.WeakKeyDictionary()
_logs_lock = threading.Lock()


def history_log(runtime: Runtime) -> HistoryLog:
    """The in-memory history of ``runtime`` (one per runtime, so tests with fresh runtimes are isolated)."""
    log = _logs.get(runtime)
    if log is None:
        with _logs_lock:
            log = _logs.get(runtime)
            if log is None:
                log = HistoryLog()
                _logs[runtime] = log
    return log


# -- filters -------------------------------------------------------------------------------------


def parse_since(since: Any) -> float | None:
    """``since`` as epoch seconds: an ISO date/datetime string, a datetime/date, or a number.

    Naive dates and datetimes are local time, as everywhere in Python.
    """
    if since is None:
        return None
    if isinstance(since, bool):
        raise ConfigurationError(f"since={since!r} is not a time")
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, _dt.datetime):
        return since.timestamp()
    if isinstance(since, _dt.date):
        return _dt.datetime(since.year, since.month, since.day).timestamp()
    if isinstance(since, str):
        text = since.strip()
        try:
            if len(text) == 10:
                d = _dt.date.fromisoformat(text)
                return _dt.datetime(d.year, d.month, d.day).timestamp()
            return _dt.datetime.fromisoformat(text).timestamp()
        except ValueError:
            pass
    raise ConfigurationError(
        f"since={since!r} is not a time: pass an ISO date or datetime string ('2026-01-01', "
        "'2026-01-01T09:00:00+00:00'), a datetime/date, or epoch seconds"
    )


def parse_status(status: Any) -> str | None:
    """``status`` as a TaskStatus value, or a ConfigurationError listing the valid ones."""
    if status is None:
        return None
    value = status.value if isinstance(status, TaskStatus) else str(status).strip().lower()
    if value not in _STATUSES:
        raise ConfigurationError(f"status={status!r} is not a run status: use one of {', '.join(_STATUSES)}")
    return value


def parse_limit(limit: Any) -> int | None:
    """``limit`` as a number of runs (None: all), or a ConfigurationError saying what is accepted."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigurationError(f"limit={limit!r} is not a number of runs: pass a whole number >= 0, "
                                 "or None for all")
    return limit if limit < 2**62 else None  # more runs than any store can hold: all of them


def workflow_name(workflow: Any) -> str | None:
    if workflow is None or isinstance(workflow, str):
        return workflow
    name = getattr(workflow, "name", None)
    if isinstance(name, str):
        return name
    raise ConfigurationError(f"workflow={workflow!r} is neither a workflow name nor a Workflow")


def matches(rec: ExecutionRecord, workflow: str | None, since: float | None, status: str | None) -> bool:
    return ((workflow is None or rec.workflow == workflow)
            and (since is None or rec.started_at >= since)
            and (status is None or rec.status.value == status))


def merge(*groups: list[ExecutionRecord], limit: int | None = None) -> list[ExecutionRecord]:
    """One record per run id (the most advanced one wins), newest first."""
    best: dict[str, ExecutionRecord] = {}
    for group in groups:
        for rec in group:
            have = best.get(rec.run_id)
            if have is None or _rank(rec) > _rank(have):
                best[rec.run_id] = rec
    out = sorted(best.values(), key=lambda r: r.started_at, reverse=True)
    return out[:limit] if limit is not None else out


def _rank(rec: ExecutionRecord) -> tuple[bool, float, int]:
    return (rec.status.finished, rec.finished_at or 0.0, len(rec.tasks))


async def query_store(url: str, *, workflow: str | None, since: float | None, status: str | None,
                      limit: int | None = None, allow_plaintext: bool | None = None) -> list[ExecutionRecord]:
    """Execution records kept in the store at ``url``.

    A record that cannot be read (another key, no key, damaged) does not hide the others: it
    is listed from the store's plain columns, with ``unreadable`` saying why.
    """
    from pyagent.durability.stores import open_store, store_failure

    limit = parse_limit(limit)
    store = await open_store(url, setting="storage")
    out = []
    try:
        try:
            headers = await store.list_runs(workflow=workflow, since=since, status=status, limit=limit)
        except Exception as exc:
            raise store_failure(store, "listing runs", exc) from exc
        for h in headers:
            out.append(await record_of_header(store, h, allow_plaintext=allow_plaintext))
    finally:
        await store.close()
    return out


async def record_of_header(store: Any, h: Any, *, allow_plaintext: bool | None = None,
                           progress: bool = True, answers: bool = True) -> ExecutionRecord:
    """The execution record a run header holds; an unreadable one from its plain columns.

    ``progress``: for a run still marked running, read its progress from its checkpoints; and
    with ``answers``, for a waiting run, what was answered since it started waiting.
    """
    from pyagent.durability.stores import safe_url

    what = f"history of run {h.run_id} in {safe_url(store.url)}"
    if h.payload:
        try:
            rec = ExecutionRecord.from_payload(h.payload, what, allow_plaintext=allow_plaintext)
            if rec.run_id != h.run_id:  # a sealed record copied over from another run
                raise StateError(f"{what} belongs to run {rec.run_id[:80]!r}: it was copied "
                                 "from another run's header (or the storage is damaged)")
        except StateError as exc:
            rec = _plain_record(h)
            rec.unreadable = str(exc)
        else:
            if h.status in _STATUSES:  # the header's column is authoritative
                rec.status = TaskStatus(h.status)
    else:
        rec = _plain_record(h)
    if progress and rec.status is TaskStatus.RUNNING and rec.unreadable is None:
        await _progress_from_checkpoints(store, rec, what, allow_plaintext)
    if progress and answers and rec.status is TaskStatus.WAITING and rec.unreadable is None:
        await _answers_since(store, rec, allow_plaintext)
    return rec


def _plain_record(h: Any) -> ExecutionRecord:
    """A record from a run header's plain columns only."""
    status = TaskStatus(h.status) if h.status in _STATUSES else TaskStatus.PENDING
    return ExecutionRecord(run_id=h.run_id, workflow=h.workflow, timestamp=_local(h.started_at),
                           status=status, started_at=h.started_at, finished_at=h.finished_at)


async def _progress_from_checkpoints(store: Any, rec: ExecutionRecord, what: str,
                                     allow_plaintext: bool | None = None) -> None:
    """A run still marked running (going on elsewhere, or killed): its progress from its checkpoints."""
    from pyagent.durability.replay import fold

    try:
        stored = await store.load(rec.run_id)
        if stored is None or not stored.checkpoints:
            return
        state = fold(stored, what, allow_plaintext=allow_plaintext)
    except Exception:
        return  # unreadable here (e.g. another key, or the store failed): the header alone is shown
    progress_from_state(rec, state)


def progress_from_state(rec: ExecutionRecord, state: WorkflowState) -> None:
    """Fill a running run's record with the task records its checkpoints hold."""
    rec.tasks_completed = len(state.completed)
    rec.tasks = [TaskRecord(name=t.name, status=t.status, agent=t.agent, error=t.error, traceback=t.traceback,
                            started_at=t.started_at, finished_at=t.finished_at, reused=t.reused,
                            attempts=[AttemptRecord(**a.to_dict()) for a in t.to_result().attempts])
                 for t in state.tasks.values()]


async def _answers_since(store: Any, rec: ExecutionRecord, allow_plaintext: bool | None) -> None:
    """A waiting run's record written when it started waiting lacks what was answered since (by
    another process, while the run did not run): add it from the store's questions."""
    from pyagent.durability.interrupts import decode, supports_interrupts
    from pyagent.durability.stores import safe_url
    from pyagent.model.interrupts import ANSWERED, ESCALATED, EXPIRED

    if not supports_interrupts(store):
        return
    try:
        rows = await store.list_interrupts(run_id=rec.run_id)
    except Exception:
        return
    seen = {(a.kind, a.data.get("interrupt")) for a in rec.audit}
    kinds = {ANSWERED: "interrupt.answered", EXPIRED: "interrupt.expired", ESCALATED: "interrupt.escalated"}
    for row in rows:
        try:
            q = decode(row, safe_url(store.url), allow_plaintext=allow_plaintext)
        except StateError:
            continue
        if ("interrupt.asked", q.id) not in seen:
            rec.audit.append(AuditRecord(kind="interrupt.asked", task=q.task, timestamp=q.asked_at, data=_plain(
                {"interrupt": q.id, "question": q.question, "level": q.level, "escalates": q.escalates,
                 "deadline": q.deadline})))
        kind = kinds.get(q.status)
        if kind is None or (kind, q.id) in seen:
            continue
        data: dict[str, Any] = {"interrupt": q.id, "question": q.question, "answered_by": q.answered_by,
                                "answered_at": q.answered_at}
        if kind == "interrupt.answered":
            import json

            data["answer"] = json.dumps(q.answer, ensure_ascii=False)
        rec.audit.append(AuditRecord(kind=kind, task=q.task, timestamp=q.answered_at, data=_plain(data)))


def _memory_records(runtime: Runtime, workflow: str | None, since: float | None,
                    status: str | None) -> list[ExecutionRecord]:
    """This process's records, one per run id (a resumed run's latest), then filtered by status:
    a run that failed and was resumed to completion is not a failed run any more."""
    latest = merge([r for r in history_log(runtime).records() if matches(r, workflow, since, None)])
    return [r for r in latest if status is None or r.status.value == status]


async def gather_history(runtime: Runtime, urls: list[str], *, workflow: Any = None, since: Any = None,
                         status: Any = None, limit: int | None = None) -> list[ExecutionRecord]:
    """History from memory and from every store in ``urls``, merged, newest first."""
    name, ts, st = workflow_name(workflow), parse_since(since), parse_status(status)
    limit = parse_limit(limit)
    groups = [_memory_records(runtime, name, ts, st)]
    for url in dict.fromkeys(urls):
        groups.append(await query_store(url, workflow=name, since=ts, status=st, limit=limit))
    return merge(*groups, limit=limit)


def get_history_sync(runtime: Runtime, urls: list[str], **filters: Any) -> list[ExecutionRecord]:
    """:func:`gather_history` from synchronous code, or from inside an event loop (in a helper thread)."""
    from pyagent._sync import run_blocking

    async def go() -> list[ExecutionRecord]:
        return await gather_history(runtime, urls, **filters)

    if not urls:
        # Memory only: no I/O, so answer directly even inside an event loop.
        name = workflow_name(filters.get("workflow"))
        ts, st = parse_since(filters.get("since")), parse_status(filters.get("status"))
        return merge(_memory_records(runtime, name, ts, st), limit=parse_limit(filters.get("limit")))
    # Inside a running loop a store is queried on a loop of its own, in a short-lived thread.
    return run_blocking(go, name="pyagent-history")


def earlier_trail(header_payload: bytes, what: str, *, allow_plaintext: bool | None = None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The audit trail and handoffs a stored run's header keeps, as a run records them: a resume
    goes on from them, so the run's history keeps what every execution did (unreadable: none)."""
    if not header_payload:
        return [], []
    try:
        rec = ExecutionRecord.from_payload(header_payload, what, allow_plaintext=allow_plaintext)
    except Exception:
        return [], []
    audit = [{**a.data, "kind": a.kind, "task": a.task, "timestamp": a.timestamp} for a in rec.audit]
    handoffs = [{**h.data, "from_agent": h.from_agent, "to_agent": h.to_agent, "reason": h.reason,
                 "timestamp": h.timestamp} for h in rec.handoffs]
    return audit, handoffs
