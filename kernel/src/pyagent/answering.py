"""Answering the questions runs ask people, and continuing those runs (``orchestrator.resume``).

An answer is recorded in the run's store first (:func:`pyagent.durability.interrupts.record_answer`),
so it is never lost. Then the run goes on where it can: in the process that holds it (the one
that started it and still waits, or a serving orchestrator, which is told at once when it is
this process and polls otherwise), or, when no process holds it, right here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.errors import ConfigurationError, InterruptNotFoundError, RunOwnedError, StateError

if TYPE_CHECKING:
    from pyagent.controller import Orchestrator
    from pyagent.durability.store import RunHeader, Store
    from pyagent.model.interrupts import Interrupt
    from pyagent.model.results import WorkflowResult
    from pyagent.plugins import Runtime


async def pending_questions(runtime: Runtime, urls: list[str], *, workflow: str | None = None,
                            run_id: str | None = None) -> list[Interrupt]:
    """Open questions of runs in this process (runs without a store) and in every store of ``urls``."""
    from pyagent.durability.interrupts import list_questions, local_url, supports_interrupts
    from pyagent.durability.stores import _close, open_store

    found: dict[str, Interrupt] = {}
    for url in [local_url(runtime), *dict.fromkeys(urls)]:
        store = await open_store(url, setting="storage")
        try:
            if not supports_interrupts(store):
                continue
            for question in await list_questions(store, workflow=workflow, run_id=run_id):
                found.setdefault(question.id, question)
        finally:
            await _close(store)
    return sorted(found.values(), key=lambda q: (q.asked_at, q.id))


def pending_sync(runtime: Runtime, urls: list[str], **filters: Any) -> list[Interrupt]:
    """:func:`pending_questions` from sync code, or from inside an event loop (on a helper thread)."""
    from pyagent._sync import run_blocking

    return run_blocking(lambda: pending_questions(runtime, urls, **filters), name="pyagent-pending")


async def _locate(runtime: Runtime, urls: list[str], run_id: str) -> tuple[str, RunHeader | None]:
    """The store URL that has ``run_id`` (and its header), or this process's for a run without a store."""
    from pyagent.durability.interrupts import local_url
    from pyagent.durability.stores import _close, open_store, safe_url

    local = local_url(runtime)
    store = await open_store(local)
    try:
        if await store.list_interrupts(run_id=run_id, limit=1):
            return local, None
    finally:
        await _close(store)
    for url in dict.fromkeys(urls):
        store = await open_store(url, setting="storage")
        try:
            stored = await store.load(run_id)
        finally:
            await _close(store)
        if stored is not None:
            return url, stored.header
    where = ", ".join(safe_url(u) for u in dict.fromkeys(urls)) or "no store (the orchestrator has none)"
    raise StateError(f"no run {run_id!r} in this process or in {where}: check the run id "
                     "(orchestrator.pending() lists the runs that wait for answers)")


async def record_answers(store: Store, run_id: str, answers: dict[str, Any], *, answered_by: str | None,
                         runtime: Runtime, where: str) -> list[Interrupt]:
    """Record several answers to one run's questions: every one is checked before any is written."""
    from pyagent.durability.interrupts import decode, record_answer
    from pyagent.errors import AnswerValidationError
    from pyagent.model.interrupts import jsonable_answer, validate_answer

    if not isinstance(answers, dict):
        raise ConfigurationError(f"answers must be a dict of question id to answer, got {type(answers).__name__}")
    for interrupt_id, value in answers.items():
        row = await store.get_interrupt(interrupt_id) if isinstance(interrupt_id, str) else None
        if row is None or row.run_id != run_id:
            raise InterruptNotFoundError(f"run {run_id!r} in {where} has no question {interrupt_id!r}: answer one "
                                         "of the questions orchestrator.pending() lists for it",
                                         run_id=run_id, interrupt_id=str(interrupt_id))
        question = decode(row, where)
        try:
            problems = validate_answer(jsonable_answer(value), question.schema)
        except ConfigurationError as exc:
            problems = [str(exc)]
        if problems and question.pending:
            raise AnswerValidationError(
                f"the answer to {question.question!r} (question {interrupt_id} of run {run_id!r}) does not match "
                f"its schema: {'; '.join(problems)}", run_id=run_id, interrupt_id=interrupt_id, errors=problems)
    return [await record_answer(store, run_id, interrupt_id, value, answered_by=answered_by,
                                clock=runtime.clock, where=where)
            for interrupt_id, value in answers.items()]


async def resume(orchestrator: Orchestrator, run_id: str, answers: dict[str, Any] | None = None, *,
                 answered_by: str | None = None, wait_for_answers: bool = False) -> WorkflowResult | None:
    """What ``orchestrator.resume`` does; see there."""
    from pyagent.durability.interrupts import held_here, local_url
    from pyagent.durability.stores import _close, open_store, safe_url
    from pyagent.plugins import get_runtime
    from pyagent.runner import check_run_id, resume_run

    check_run_id(run_id)
    runtime = get_runtime()
    host = orchestrator.host
    urls = orchestrator._history_urls()
    if host is not None and host.store is not None:
        urls.append(host.store)
    url, header = await _locate(runtime, urls, run_id)
    if answers:
        store = await open_store(url, setting="storage")
        try:
            where = "this process" if url == local_url(runtime) else safe_url(url)
            await record_answers(store, run_id, answers, answered_by=answered_by, runtime=runtime, where=where)
        finally:
            await _close(store)
    if header is None:  # a run without a store: only the process that runs it can go on with it
        if not held_here(run_id):
            raise StateError(f"run {run_id!r} has no store and no task of it waits in this process any more: "
                             "it cannot go on (give its workflow checkpointing to make it resumable)")
        return None
    if held_here(run_id):
        return None  # this process holds it (workflow.run() still waits): it goes on there
    if host is not None and host.store == url and header.workflow in orchestrator.workflows:
        host.wake(run_id)
        return None
    store = await open_store(url, setting="storage")
    try:
        lease = await store.get_lease(run_id)
    finally:
        await _close(store)
    from pyagent.durability.ownership import _dead_here

    if lease is not None and not lease.expired(runtime.clock.time()) and not _dead_here(lease.owner):
        return None  # another process holds the run: it goes on there
    workflow = orchestrator.workflows.get(header.workflow)
    if workflow is None:
        raise ConfigurationError(
            f"run {run_id!r} belongs to workflow {header.workflow!r}, which this orchestrator does not have: "
            "add it with orchestrator.add_workflow(...) to continue the run here")
    try:
        return await resume_run(workflow, run_id, url, wait_for_answers=wait_for_answers,
                                listeners=orchestrator._listeners)
    except RunOwnedError:
        return None  # claimed by another process meanwhile: it goes on there
