"""What the pages read: a store opened once for the app's life, paged queries, fingerprints.

Every query goes through the kernel's plugin API (``list_headers``, ``list_runs``,
``read_run``, the store's leases); paging happens in the store's own query, so the runs page
of a store with 10,000 runs reads one page of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pyagent.plugin import (
    ConfigurationError,
    ExecutionRecord,
    Interrupt,
    Lease,
    RunDetails,
    RunHeader,
    Store,
    TaskStatus,
    close_store,
    list_headers,
    list_questions,
    list_runs,
    open_store,
    read_run,
    safe_url,
    supports_queue,
)

STATUSES = [s.value for s in TaskStatus]
PAGE_SIZES = (20, 50, 100, 200)
#: The approvals page shows at most this many pending questions (the oldest first).
QUESTIONS_SHOWN = 200


@dataclass
class RunFilters:
    """The runs page's query: filters and the page."""

    workflow: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 50
    offset: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, params: Any) -> RunFilters:
        """From query parameters; a bad value is dropped and reported, never a server error."""
        f = cls()
        f.workflow = (params.get("workflow") or "").strip() or None
        status = (params.get("status") or "").strip().lower() or None
        if status is not None and status not in STATUSES:
            f.problems.append(f"status {status!r} is not a run status (one of {', '.join(STATUSES)})")
            status = None
        f.status = status
        for name in ("since", "until"):
            text = (params.get(name) or "").strip() or None
            if text is not None:
                try:
                    _epoch(text)
                except ConfigurationError:
                    f.problems.append(f"{name} {text!r} is not a date or time (2026-01-05 or 2026-01-05T09:30)")
                    text = None
            setattr(f, name, text)
        f.limit = _whole(params.get("limit"), 50, f.problems, "limit")
        if f.limit not in PAGE_SIZES:
            f.limit = min(PAGE_SIZES, key=lambda size: abs(size - f.limit))
        f.offset = _whole(params.get("offset"), 0, f.problems, "offset")
        return f

    def query(self, **changes: Any) -> str:
        """This query as a URL query string, with ``changes`` applied (None removes a key)."""
        from urllib.parse import urlencode

        values: dict[str, Any] = {"workflow": self.workflow, "status": self.status, "since": self.since,
                                  "until": self.until, "limit": self.limit if self.limit != 50 else None,
                                  "offset": self.offset or None}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, "", 0)})


def _whole(text: Any, default: int, problems: list[str], name: str) -> int:
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except (TypeError, ValueError):
        problems.append(f"{name} {text!r} is not a whole number")
        return default
    if value < 0:
        problems.append(f"{name} {text!r} is negative")
        return default
    return value


def _epoch(text: str | None) -> float | None:
    import datetime as dt

    if text is None:
        return None
    try:
        if len(text) == 10:
            d = dt.date.fromisoformat(text)
            return dt.datetime(d.year, d.month, d.day).timestamp()
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigurationError(f"{text!r} is not a date or time") from None


@dataclass
class RunsPage:
    rows: list[ExecutionRecord]
    owners: dict[str, Lease]
    has_older: bool
    filters: RunFilters


class RunSource:
    """One store, opened on first use and kept open until :meth:`close`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.display_url = safe_url(url)
        self._store: Store | None = None

    async def store(self) -> Store:
        if self._store is None:
            store = await open_store(self.url, setting="storage")
            if self._store is None:
                self._store = store
            else:  # another request opened it meanwhile
                await close_store(store)
        return self._store

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await close_store(store)

    # -- runs --------------------------------------------------------------------------

    async def page(self, f: RunFilters) -> RunsPage:
        store = await self.store()
        rows = await list_runs(store, workflow=f.workflow, status=f.status, since=_epoch(f.since),
                               until=_epoch(f.until), limit=f.limit + 1, offset=f.offset, answers=False)
        has_older = len(rows) > f.limit
        rows = rows[:f.limit]
        return RunsPage(rows, await self.owners(rows), has_older, f)

    async def owners(self, rows: list[ExecutionRecord]) -> dict[str, Lease]:
        """The lease of each run still going (or killed while going): who owns it, until when."""
        store = await self.store()
        out = {}
        for rec in rows:
            if rec.status in (TaskStatus.RUNNING, TaskStatus.PENDING):
                lease = await store.get_lease(rec.run_id)
                if lease is not None:
                    out[rec.run_id] = lease
        return out

    async def page_fingerprint(self, f: RunFilters) -> tuple[Any, ...]:
        """Changes whenever what the runs page shows would: runs added, ended, progressing."""
        store = await self.store()
        headers = await list_headers(store, workflow=f.workflow, status=f.status, since=_epoch(f.since),
                                     until=_epoch(f.until), limit=f.limit + 1, offset=f.offset)
        marks = []
        for h in headers:
            progress: Any = None
            if h.status in ("running", "pending"):
                progress = await self._progress_mark(store, h.run_id)
            marks.append((h.run_id, h.status, h.finished_at, progress))
        return tuple(marks)

    async def details(self, run_id: str) -> RunDetails | None:
        return await read_run(await self.store(), run_id)

    # -- cancelling across processes (a store that is a run queue) -----------------------------

    async def is_queue(self) -> bool:
        """Whether the store is a run queue: a cancel request there reaches the process running a run."""
        return supports_queue(await self.store())

    async def cancel_request(self, run_id: str) -> str | None:
        """Why someone asked the store to cancel ``run_id`` (None: nobody did, or the store is no queue)."""
        store = await self.store()
        if not supports_queue(store):
            return None
        return (await store.cancel_requests([run_id])).get(run_id)

    async def request_cancel(self, run_id: str, reason: str) -> str | None:
        """Ask the store to cancel ``run_id``: ``"cancelled"`` (nobody held it: cancelled now),
        ``"requested"`` (its owner stops it at its next task boundary), ``"finished"`` (it had
        ended) or None (no such run). ConfigurationError when the store is no run queue."""
        store = await self.store()
        if not supports_queue(store):
            raise ConfigurationError(f"the store {self.display_url} is not a run queue: it cannot pass a cancel "
                                     "request to the process running a run")
        return await store.request_cancel(run_id, reason=reason, now=time.time())

    async def run_fingerprint(self, run_id: str) -> tuple[Any, ...]:
        store = await self.store()
        stored = await store.load(run_id)
        if stored is None:
            return ()
        h = stored.header
        lease = await store.get_lease(run_id)
        last = stored.checkpoints[-1].seq if stored.checkpoints else None
        return (h.status, h.finished_at, len(h.payload), last,
                None if lease is None else (lease.owner, lease.expired(time.time())))

    async def _progress_mark(self, store: Store, run_id: str) -> Any:
        stored = await store.load(run_id)
        if stored is None or not stored.checkpoints:
            return None
        return stored.checkpoints[-1].seq

    # -- questions for people ------------------------------------------------------------

    async def questions(self, *, run_id: str | None = None, workflow: str | None = None,
                        status: str | None = "pending", limit: int | None = QUESTIONS_SHOWN) -> list[Interrupt]:
        """Questions (pending ones by default; ``status=None``: all), oldest first, at most
        ``limit``; ConfigurationError when the store cannot keep questions."""
        return await list_questions(await self.store(), run_id=run_id, workflow=workflow, status=status,
                                    where=self.display_url, limit=limit)

    # -- metrics -----------------------------------------------------------------------

    async def headers_since(self, since: float, limit: int) -> list[RunHeader]:
        return await list_headers(await self.store(), since=since, limit=limit)
