"""Reading runs back to show them: a page of run records, and one run in full.

A dashboard or a report pages through a store's runs: the store pages in its own query
(``limit``/``offset``), so page 200 of a large store costs what page 1 does. One run opens with
everything kept about it: its audit record (tasks, attempts, handoffs, what its policies did),
the state its checkpoints hold (its input and every output) and who owns it now (its lease).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyagent.durability.history import (
    ExecutionRecord,
    parse_since,
    parse_status,
    progress_from_state,
    record_of_header,
    workflow_name,
)
from pyagent.errors import ConfigurationError, StateError
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.durability.state import WorkflowState
    from pyagent.durability.store import Lease, RunHeader, Store


@dataclass
class RunDetails:
    """One run as a store keeps it.

    ``state`` is what its checkpoints hold (the input, every task's output); None when the run
    was recorded without checkpoints (history only) or they cannot be read, and then
    ``state_error`` says which. ``lease`` is who owns the run now (possibly expired), None
    when nobody does; ``checkpoints`` how many checkpoints were read.
    """

    record: ExecutionRecord
    state: WorkflowState | None
    state_error: str | None
    lease: Lease | None
    checkpoints: int


def _paging(limit: Any, offset: Any) -> tuple[int | None, int]:
    for name, value in (("limit", limit), ("offset", offset)):
        if value is None and name == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{name}={value!r} must be a whole number >= 0")
    return limit, offset


_PAGES_IN_QUERY: dict[type, bool] = {}


def _pages_in_query(store: Store) -> bool:
    """Whether the store's ``list_runs`` takes ``until`` and ``offset`` (stores written before them do not)."""
    kind = type(store)
    known = _PAGES_IN_QUERY.get(kind)
    if known is None:
        try:
            params = inspect.signature(store.list_runs).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        known = ("offset" in params and "until" in params) or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        _PAGES_IN_QUERY[kind] = known
    return known


async def list_headers(store: Store, *, workflow: Any = None, status: Any = None, since: Any = None,
                       until: Any = None, limit: int | None = 50, offset: int = 0) -> list[RunHeader]:
    """Run headers (the plain columns and the undecoded payload), newest first, one page of them.

    Filters as :func:`list_runs`. Cheap: nothing is decoded.
    """
    from pyagent.durability.stores import store_failure

    limit, offset = _paging(limit, offset)
    name, st = workflow_name(workflow), parse_status(status)
    lo, hi = parse_since(since), parse_since(until)
    try:
        if _pages_in_query(store):
            return await store.list_runs(workflow=name, since=lo, status=st, limit=limit, until=hi, offset=offset)
        # A store without paging: read up to the end of the page and cut it here.
        every = await store.list_runs(workflow=name, since=lo, status=st,
                                      limit=None if hi is not None or limit is None else offset + limit)
    except Exception as exc:
        raise store_failure(store, "listing runs", exc) from exc
    rows = [h for h in every if hi is None or h.started_at < hi]
    return rows[offset:] if limit is None else rows[offset:offset + limit]


async def list_runs(store: Store, *, workflow: Any = None, status: Any = None, since: Any = None,
                    until: Any = None, limit: int | None = 50, offset: int = 0, progress: bool = True,
                    answers: bool = True, allow_plaintext: bool | None = None) -> list[ExecutionRecord]:
    """One page of the execution records in ``store``, newest first.

    ``workflow`` (a name or a Workflow), ``status`` (``"failed"``, ...), ``since`` and ``until``
    (an ISO date or datetime, a datetime or epoch seconds: started at or after ``since`` and
    before ``until``) filter; ``limit`` and ``offset`` page, in the store's query. A record that
    cannot be read is listed from the store's plain columns, with ``unreadable`` saying why.
    ``progress``: a run still marked running gets its progress from its checkpoints.
    ``answers``: a waiting run's audit trail gets what was answered since it started waiting
    (one query of its questions each; a list that shows no audit trail passes False).
    """
    headers = await list_headers(store, workflow=workflow, status=status, since=since, until=until,
                                 limit=limit, offset=offset)
    return [await record_of_header(store, h, allow_plaintext=allow_plaintext, progress=progress, answers=answers)
            for h in headers]


async def read_run(store: Store, run_id: str, *, allow_plaintext: bool | None = None) -> RunDetails | None:
    """Everything ``store`` keeps about ``run_id``, or None when it has no such run."""
    from pyagent.durability.replay import fold
    from pyagent.durability.stores import safe_url, store_failure

    try:
        stored = await store.load(run_id)
    except Exception as exc:
        raise store_failure(store, f"loading run {run_id!r}", exc) from exc
    if stored is None:
        return None
    rec = await record_of_header(store, stored.header, allow_plaintext=allow_plaintext, progress=False)
    state: WorkflowState | None = None
    problem: str | None = None
    if not stored.checkpoints:
        problem = ("the run has no checkpoints: only its history record was kept (its workflow "
                   "was not checkpointed), so its input and outputs were not saved")
    else:
        try:
            state = fold(stored, f"run {run_id!r} in {safe_url(store.url)}", allow_plaintext=allow_plaintext)
        except StateError as exc:
            problem = str(exc)
    if state is not None and rec.status is TaskStatus.RUNNING and rec.unreadable is None:
        progress_from_state(rec, state)
    try:
        lease = await store.get_lease(run_id)
    except Exception as exc:
        raise store_failure(store, f"reading the lease of run {run_id!r}", exc) from exc
    return RunDetails(rec, state, problem, lease, len(stored.checkpoints))
