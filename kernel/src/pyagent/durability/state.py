"""Workflow state: a snapshot of a run that can be inspected, saved to a file, and resumed from.

``workflow.get_state()`` builds a :class:`WorkflowState` from the running (or last) run.
``state.save(path)`` writes versioned JSON atomically (a temporary file renamed over the
target), encrypted when ``PYAGENT_STATE_KEY`` is set; ``WorkflowState.load(path)`` reads it
back and refuses corrupt, truncated, wrong-version or tampered files with a
:class:`~pyagent.errors.StateError` (nothing is changed). How non-JSON outputs are handled
is described in :mod:`pyagent.codec`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pyagent.durability import codec
from pyagent.errors import StateError
from pyagent.model.results import Attempt, TaskResult
from pyagent.model.tasks import TaskStatus
from pyagent.model.tracebacks import restore_traceback, stored_attempts

if TYPE_CHECKING:
    from pyagent.engine.run import WorkflowRun
    from pyagent.workflow import Workflow

FORMAT = "pyagent-state"
FORMAT_VERSION = 1


class AttemptState(BaseModel):
    """One recorded attempt of a task."""

    number: int
    agent: str
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None


class TaskState(BaseModel):
    """One task of a run as saved: status, output, error and every attempt."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    status: TaskStatus
    agent: str = ""
    output: Any = None
    error: str | None = None
    traceback: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: list[AttemptState] | None = None  # None: ran once without a policy (implied)
    reason: str | None = None
    reused: bool = False
    fallback_strategy: str | None = None
    primary_error: str | None = None
    primary_output: Any = None

    @model_validator(mode="before")
    @classmethod
    def _last_traceback(cls, data: Any) -> Any:
        # Saved compactly: the failing attempt's traceback is the task's, stored once (on the task).
        return restore_traceback(data) if isinstance(data, dict) else data

    @classmethod
    def of(cls, rec: TaskResult) -> TaskState:
        return cls.model_construct(
            name=rec.name, status=rec.status, agent=rec.agent, output=rec.output,
            error=rec.error_message, traceback=rec.traceback, started_at=rec.started_at, finished_at=rec.finished_at,
            attempts=[AttemptState.model_construct(**a.to_dict()) for a in rec.attempts],
            reason=rec.reason, reused=rec.reused, fallback_strategy=rec.fallback_strategy,
            primary_error=rec.primary_error, primary_output=rec.primary_output,
        )

    def to_result(self) -> TaskResult:
        """A TaskResult carrying this saved task (for reuse when a run resumes)."""
        rec = TaskResult(self.name, self.status, self.agent)
        rec.output = self.output
        rec.started_at, rec.finished_at = self.started_at, self.finished_at
        if self.attempts is not None:
            atts = []
            for a in self.attempts:
                att = Attempt(a.number, a.agent, a.started_at or 0.0)
                att.finished_at, att.error, att.traceback = a.finished_at, a.error, a.traceback
                atts.append(att)
            rec.attempts = atts
        rec.traceback = self.traceback
        rec.reason, rec.reused = self.reason, self.reused
        rec.fallback_strategy, rec.primary_error = self.fallback_strategy, self.primary_error
        rec.primary_output = self.primary_output
        return rec

    def encode(self) -> dict[str, Any]:
        """JSON-able form; a non-serialisable output raises StateError naming this task."""
        data = {
            "name": self.name, "status": self.status.value, "agent": self.agent,
            "output": codec.to_jsonable(self.output, f"the output of task '{self.name}'"),
            "error": self.error, "started_at": self.started_at, "finished_at": self.finished_at,
            "attempts": None if self.attempts is None else stored_attempts(
                [a.model_dump() for a in self.attempts], self.traceback),
            "reason": self.reason, "reused": self.reused,
            "fallback_strategy": self.fallback_strategy, "primary_error": self.primary_error,
        }
        if self.traceback is not None:
            data["traceback"] = self.traceback
        if self.primary_output is not None:
            data["primary_output"] = codec.to_jsonable(
                self.primary_output, f"the partial output of task '{self.name}'")
        return data


def encode_record(rec: TaskResult) -> dict[str, Any]:
    """A task record as JSON-able data, the same as ``TaskState.encode`` (used by checkpoints).

    Built directly from the TaskResult, without a pydantic model: it runs once per task of
    every checkpointed run.
    """
    name = rec.name
    data: dict[str, Any] = {
        "name": name, "status": rec.status.value, "agent": rec.agent,
        "output": codec.to_jsonable(rec.output, f"the output of task '{name}'"),
        "started_at": rec.started_at, "finished_at": rec.finished_at,
    }
    # Compact: fields at their default are left out, and so is the attempt list of a task
    # that ran once without a policy (rebuilt from the task's own times when read back).
    if rec._attempts is not None:
        data["attempts"] = stored_attempts([a.to_dict() for a in rec._attempts], rec.traceback)
    for key, value in (("error", rec.error_message), ("traceback", rec.traceback), ("reason", rec.reason),
                       ("fallback_strategy", rec.fallback_strategy), ("primary_error", rec.primary_error)):
        if value is not None:
            data[key] = value
    if rec.reused:
        data["reused"] = True
    if rec.primary_output is not None:
        data["primary_output"] = codec.to_jsonable(rec.primary_output, f"the partial output of task '{name}'")
    return data


class WorkflowState(BaseModel):
    """Where a workflow run stands: usable while it runs, after it ends, and after a restart.

    ``status`` is the run's status (``"pending"`` before any run, ``"running"``, ``"waiting"``
    (for answers to questions), ``"completed"``, ``"failed"``, ``"cancelled"``); ``current_task``
    the task started most recently and still running;
    ``completed``/``pending``/``failed``/``cancelled``/``skipped``/``running``/``waiting`` are task names;
    ``results`` the outputs of completed tasks by name; ``tasks`` every task's record.
    ``circuit`` shows the workflow's circuit breaker, when it has one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    VERSION: ClassVar[int] = FORMAT_VERSION

    workflow: str
    run_id: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    current_task: str | None = None
    completed: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    cancelled: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    running: list[str] = Field(default_factory=list)
    waiting: list[str] = Field(default_factory=list, description="tasks waiting for an answer")
    results: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    input: Any = None
    # Keys as the agents wrote them: ctx.state is a plain dict, so 7 or ("region", 2) are keys too.
    shared: dict[Any, Any] = Field(default_factory=dict, description="the run's ctx.state")
    error: str | None = None
    started_at: float | None = Field(default=None, description="when the run first started")
    finished_at: float | None = None
    resumes: list[float] = Field(default_factory=list, description="when it was resumed, in order")
    trigger: dict[str, Any] | None = Field(default=None, description="how the run first started")
    circuit: dict[str, Any] | None = None
    # What a stored run's earlier executions recorded (from its header), carried into a resume.
    audit: list[dict[str, Any]] = Field(default_factory=list, exclude=True, repr=False)
    handoffs: list[dict[str, Any]] = Field(default_factory=list, exclude=True, repr=False)

    def __repr__(self) -> str:
        # Bounded: results can be megabytes, and pydantic's repr would print them all.
        lists = ", ".join(f"{k}={getattr(self, k)!r}" if len(getattr(self, k)) <= 8 else f"{k}=<{len(getattr(self, k))} tasks>"
                          for k in ("completed", "running", "waiting", "pending", "failed", "cancelled", "skipped"))
        return (f"WorkflowState(workflow={self.workflow!r}, run_id={self.run_id!r}, status={self.status.value}, "
                f"current_task={self.current_task!r}, {lists})")

    # -- building --------------------------------------------------------------------------

    @classmethod
    def of_run(cls, run: WorkflowRun, circuit: dict[str, Any] | None = None) -> WorkflowState:
        """Snapshot a run (running or finished); safe to call from another task at any moment."""
        records = _copy(run.records)
        names = run.workflow.task_names
        return cls.from_records(
            run.workflow.name, names, records, run_id=run.run_id, status=run.status,
            current_task=run.current_task, input=run.input, shared=dict(run.state),
            error=_run_error(run), started_at=run.first_started_at, finished_at=run.finished_at,
            resumes=list(run.resumes), trigger=dict(run.trigger), circuit=circuit,
        )

    @classmethod
    def from_records(cls, workflow: str, names: list[str], records: dict[str, TaskResult] | dict[str, TaskState],
                     **fields: Any) -> WorkflowState:
        tasks = {n: (r if isinstance(r, TaskState) else TaskState.of(r)) for n, r in records.items()}
        by: dict[TaskStatus, list[str]] = {}
        for name, t in tasks.items():
            by.setdefault(t.status, []).append(name)
        done = {n for n, t in tasks.items() if t.status.finished}
        running = by.get(TaskStatus.RUNNING, [])
        waiting = by.get(TaskStatus.WAITING, [])
        current = fields.pop("current_task", None)
        if current not in running:
            current = running[-1] if running else None
        return cls(
            workflow=workflow,
            completed=by.get(TaskStatus.COMPLETED, []),
            failed=by.get(TaskStatus.FAILED, []),
            cancelled=by.get(TaskStatus.CANCELLED, []),
            skipped=by.get(TaskStatus.SKIPPED, []),
            running=running,
            waiting=waiting,
            pending=[n for n in names if n not in done and n not in running and n not in waiting],
            results={n: t.output for n, t in tasks.items() if t.status is TaskStatus.COMPLETED},
            tasks=tasks, current_task=current, **fields,
        )

    def completed_results(self) -> dict[str, TaskResult]:
        """Completed tasks as TaskResults, for ``run_workflow(resumed=...)``."""
        return {n: t.to_result() for n, t in self.tasks.items() if t.status is TaskStatus.COMPLETED}

    # -- files -----------------------------------------------------------------------------

    def encode(self) -> dict[str, Any]:
        """The JSON-able body of a state file (raises StateError for unsaveable values)."""
        return {
            "workflow": self.workflow, "run_id": self.run_id, "status": self.status.value,
            "current_task": self.current_task, "error": self.error,
            "started_at": self.started_at, "finished_at": self.finished_at, "resumes": self.resumes,
            "trigger": self.trigger,
            "input": codec.to_jsonable(self.input, "the run's input"),
            "shared": codec.to_jsonable(self.shared, "ctx.state"),
            "tasks": [t.encode() for t in self.tasks.values()],
            "order": self._order(),
        }

    def _order(self) -> list[str]:
        return list(self.tasks) + [n for n in self.pending if n not in self.tasks]

    @classmethod
    def decode(cls, body: dict[str, Any], what: str) -> WorkflowState:
        try:
            tasks = {t["name"]: TaskState.model_validate(t) for t in body["tasks"]}
            names = list(body.get("order") or tasks)
            return cls.from_records(
                body["workflow"], names, tasks, run_id=body.get("run_id"),
                status=TaskStatus(body["status"]), current_task=body.get("current_task"),
                input=body.get("input"), shared=body.get("shared") or {},
                error=body.get("error"), started_at=body.get("started_at"),
                finished_at=body.get("finished_at"), resumes=list(body.get("resumes") or []),
                trigger=_trigger(body.get("trigger")),
            )
        except StateError:
            raise
        except Exception as exc:
            raise StateError(f"{what} does not hold a valid workflow state ({type(exc).__name__}: {exc})") from None

    def to_bytes(self) -> bytes:
        """The state file's bytes: a versioned envelope, checksummed, encrypted with a key set."""
        body = codec.dumps(self.encode(), f"the state of run {self.run_id!r}")
        envelope: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "workflow": self.workflow,
                                    "run_id": self.run_id}
        token = codec.encrypt_text(body)
        if token is None:
            envelope["sha256"] = hashlib.sha256(body).hexdigest()
            envelope["state"] = body.decode()
        else:
            envelope["encrypted"] = token
        return codec.dumps(envelope, "the state file")

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "state data", *, workflow: str | None = None,
                   allow_plaintext: bool | None = None) -> WorkflowState:
        """Parse bytes written by :meth:`to_bytes`; every problem is a StateError.

        With ``PYAGENT_STATE_KEY`` set, an unencrypted state is refused (its checksum has no
        key, so whoever edits it can recompute it) unless ``allow_plaintext`` (or
        ``PYAGENT_STATE_ALLOW_PLAINTEXT=1``) says it was saved before encryption was turned on.
        """
        if not raw.strip():
            raise StateError(f"{what} is empty")
        import json

        try:
            envelope = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise StateError(f"{what} is corrupt or truncated (not valid JSON: {exc})") from None
        if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
            raise StateError(f"{what} is not a pyagent state file (no \"format\": \"{FORMAT}\")")
        version = envelope.get("version")
        if version != FORMAT_VERSION:
            raise StateError(
                f"{what} has state format version {version!r}, but this pyagent reads version "
                f"{FORMAT_VERSION}: save it again with a matching pyagent version"
            )
        if workflow is not None and envelope.get("workflow") != workflow:
            raise StateError(
                f"{what} holds a run of workflow {envelope.get('workflow')!r}, not {workflow!r}: "
                "resume it with the workflow it was saved from"
            )
        if "encrypted" in envelope:
            body = codec.decrypt_text(str(envelope["encrypted"]), what)
        else:
            codec.refuse_plaintext(what, allow_plaintext)
            text = envelope.get("state")
            if not isinstance(text, str):
                raise StateError(f"{what} has no state body: truncated or edited?")
            body = text.encode()
            if hashlib.sha256(body).hexdigest() != envelope.get("sha256"):
                raise StateError(f"{what} failed its checksum: the file was altered or damaged")
        data = codec.loads(body, what)
        if not isinstance(data, dict):
            raise StateError(f"{what} does not hold a workflow state")
        return cls.decode(data, what)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this state to ``path`` atomically; raises StateError before writing if it cannot be saved."""
        target = Path(path)
        data = self.to_bytes()  # may raise: then nothing is written
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise StateError(f"state file {str(target)!r} cannot be written: {exc}: check that its folder "
                             "exists (or can be created) and is writable; nothing was written") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):  # a full disk, the target a folder, ...
                raise StateError(f"state file {str(target)!r} cannot be written: {exc}; nothing was "
                                 "written") from None
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, workflow: str | None = None,
             allow_plaintext: bool | None = None) -> WorkflowState:
        """Read a state file; ``workflow`` (a name) rejects files saved from another workflow.

        ``allow_plaintext``: read an unencrypted file although ``PYAGENT_STATE_KEY`` is set
        (see :meth:`from_bytes`).
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise StateError(f"state file {str(p)!r} does not exist") from None
        except OSError as exc:
            raise StateError(f"state file {str(p)!r} cannot be read: {exc}") from None
        return cls.from_bytes(raw, f"state file {str(p)!r}", workflow=workflow, allow_plaintext=allow_plaintext)

    def check_workflow(self, workflow: Workflow, what: str) -> None:
        """StateError if this state cannot belong to ``workflow`` (other name, unknown tasks)."""
        if self.workflow != workflow.name:
            raise StateError(
                f"{what} holds a run of workflow {self.workflow!r}, not {workflow.name!r}: "
                "resume it with the workflow it was saved from"
            )
        known = set(workflow.task_names) | {s.name for s in workflow.steps}
        unknown = [n for n in self.completed if n not in known]
        if unknown:
            raise StateError(
                f"{what} has completed tasks {unknown} that workflow {workflow.name!r} no longer "
                f"has (its tasks: {', '.join(workflow.task_names)}): the workflow changed since "
                "the state was saved"
            )


def _copy(records: dict[str, TaskResult]) -> dict[str, TaskResult]:
    # A run in another thread may add a record while we copy; retry rather than fail.
    for _ in range(5):
        try:
            return dict(records)
        except RuntimeError:
            continue
    return dict(records)


def _trigger(value: Any) -> dict[str, Any] | None:
    """A saved trigger (``{"kind": ..., "source": ...}``), or None for anything else (older saves)."""
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        return value
    return None


def _run_error(run: WorkflowRun) -> str | None:
    if run.errors:
        return next(reversed(run.errors.values()))
    return None


def initial_state(workflow: Workflow, circuit: dict[str, Any] | None = None) -> WorkflowState:
    """The state of a workflow that has not run yet: every task pending."""
    return WorkflowState(workflow=workflow.name, pending=workflow.task_names, circuit=circuit)
