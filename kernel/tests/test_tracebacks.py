"""A failure keeps its traceback: on the task, each failed attempt and the run; bounded; in the
checkpoints and the history record (sealed like every payload), read back by ``read_run``."""

from __future__ import annotations

import inspect
import json
from typing import Any

import anyio
import pytest

from pyagent import Task, Workflow
from pyagent.durability import codec
from pyagent.durability.history import ExecutionRecord, progress_from_state, record
from pyagent.durability.state import WorkflowState, encode_record
from pyagent.model.tasks import RetryConfig, TaskStatus
from pyagent.model.tracebacks import MAX_CHARS, MAX_FRAMES, format_traceback
from pyagent.orchestrator import Orchestrator
from pyagent.plugin import open_store, read_run
from pyagent.plugins import Runtime

pytestmark = pytest.mark.anyio


def parse_order(text: Any) -> Any:
    raise ValueError(f"order {text!r} has no quantity")  # the failing line


FAILING_LINE = f'{__file__}", line {inspect.getsourcelines(parse_order)[1] + 1}, in parse_order'


def recurse(n: int) -> None:
    if n == 0:
        raise RecursionError("deep down")
    recurse(n - 1)


def raised(fn: Any, *args: Any) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("it did not raise")


# -- formatting --------------------------------------------------------------------------


def test_a_shallow_traceback_is_python_s_own_untrimmed() -> None:
    exc = raised(parse_order, "x")
    text = format_traceback(exc)
    assert text.startswith("Traceback (most recent call last):")
    assert FAILING_LINE in text and text.rstrip().endswith("ValueError: order 'x' has no quantity")
    assert "trimmed" not in text


def test_a_deep_traceback_keeps_its_last_frames_and_says_it_was_trimmed() -> None:
    exc = raised(recurse, 60)
    text = format_traceback(exc)
    assert text.startswith(f"[traceback trimmed: only the last {MAX_FRAMES} frames of each exception are kept]")
    # The innermost ones, where it was raised: Python shows 3 of the 19 recursive calls, then
    # says how many more it left out.
    assert text.count(", in recurse") == 4 and "[Previous line repeated 16 more times]" in text
    assert text.rstrip().endswith("RecursionError: deep down")
    assert "raised(" not in text  # the outermost frames are the ones left out


def test_a_huge_traceback_keeps_its_end_within_the_character_bound() -> None:
    exc = raised(parse_order, "x" * (3 * MAX_CHARS))
    text = format_traceback(exc)
    first, _, rest = text.partition("\n")
    assert first == f"[traceback trimmed: only its last {MAX_CHARS} characters are kept]"
    assert len(rest) <= MAX_CHARS and rest.rstrip().endswith("has no quantity")


def test_causes_are_kept_and_a_broken_exception_never_breaks_the_formatting() -> None:
    def wrap() -> None:
        try:
            parse_order("y")
        except ValueError as exc:
            raise RuntimeError("import failed") from exc

    text = format_traceback(raised(wrap))
    assert FAILING_LINE in text and "direct cause" in text and "RuntimeError: import failed" in text

    class Broken(Exception):
        def __str__(self) -> str:
            raise TypeError("no text")

    def broken() -> None:
        raise Broken()

    assert "Broken" in format_traceback(raised(broken))


# -- on the results ----------------------------------------------------------------------


async def test_a_failed_task_has_its_traceback_and_so_has_the_run(drt: Runtime) -> None:
    wf = Workflow(name="orders", steps=[Task(name="parse", agent=parse_order)])
    result = await wf.run("2 apples")
    task = result.tasks["parse"]
    assert task.status is TaskStatus.FAILED and task.error_message == "ValueError: order '2 apples' has no quantity"
    assert task.traceback is not None and FAILING_LINE in task.traceback
    assert task.attempts[-1].traceback == task.traceback
    assert result.traceback is not None and FAILING_LINE in result.traceback
    assert "TaskFailedError: task 'parse' failed" in result.traceback  # the run's error, with its cause
    assert task.to_dict()["traceback"] == task.traceback


async def test_a_run_that_succeeds_keeps_no_traceback_anywhere(drt: Runtime) -> None:
    wf = Workflow(name="fine", steps=[Task(name="a", agent=lambda x: x + 1)])
    result = await wf.run(1)
    assert result.traceback is None and result.tasks["a"].traceback is None
    assert "traceback" not in encode_record(result.tasks["a"])  # nothing added to what a checkpoint saves


async def test_every_failed_attempt_keeps_its_own_traceback(drt: Runtime) -> None:
    calls = {"n": 0}

    def flaky(x: Any) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}: refused")
        return "ok"

    wf = Workflow(name="flaky", steps=[Task(name="call", agent=flaky,
                                            retry_config=RetryConfig(max_retries=3, initial_delay=0))])
    result = await wf.run(None)
    call = result.tasks["call"]
    assert call.status is TaskStatus.COMPLETED and call.traceback is None
    first, second, third = call.attempts
    for attempt, n in ((first, 1), (second, 2)):
        assert attempt.traceback is not None and f"ConnectionError: try {n}: refused" in attempt.traceback
        assert ", in flaky" in attempt.traceback
    assert third.error is None and third.traceback is None


async def test_a_failed_fallback_keeps_the_fallback_s_traceback_and_the_primary_s(drt: Runtime) -> None:
    def backup(x: Any) -> Any:
        raise LookupError("the backup has nothing either")

    wf = Workflow(name="fb", steps=[Task(name="parse", agent=parse_order, fallback_agent=backup)])
    result = await wf.run("z")
    parse = result.tasks["parse"]
    assert parse.status is TaskStatus.FAILED
    primary, fallback = parse.attempts
    assert primary.traceback is not None and FAILING_LINE in primary.traceback
    assert fallback.traceback is not None and "LookupError: the backup has nothing either" in fallback.traceback
    assert parse.traceback == fallback.traceback


async def test_a_cancelled_run_has_its_reason_and_no_traceback(drt: Runtime) -> None:
    started = anyio.Event()
    results: list[Any] = []

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    wf = Workflow(name="slow", steps=[Task(name="hang", agent=hang)])

    async def go() -> None:
        results.append(await wf.run(None, run_id="stopped"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        with anyio.fail_after(5):
            await started.wait()
        assert wf.cancel("stopped", reason="not needed")
    (result,) = results
    assert result.status is TaskStatus.CANCELLED and result.error == "RunCancelledError: not needed"
    assert result.traceback is None and result.tasks["hang"].traceback is None


# -- stored, sealed, read back ----------------------------------------------------------------


async def test_tracebacks_are_checkpointed_recorded_and_read_back(drt: Runtime, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    wf = orch.add_workflow(Workflow(name="orders", steps=[Task(name="parse", agent=parse_order)],
                                    checkpointing={"storage": store_url}))
    result = await orch.run_workflow(wf, "3 pears", run_id="failed-1")
    assert result.status is TaskStatus.FAILED
    store = await open_store(store_url)
    try:
        details = await read_run(store, "failed-1")
        assert details is not None and details.state is not None
        rec = details.record
        assert rec.traceback == result.traceback
        (task,) = rec.tasks
        assert task.traceback == result.tasks["parse"].traceback and FAILING_LINE in task.traceback
        assert task.attempts[-1].traceback == task.traceback  # saved once, on the task, and filled in
        assert details.state.tasks["parse"].traceback == task.traceback
        assert details.state.tasks["parse"].to_result().attempts[-1].traceback == task.traceback
        # Saved once in the checkpoints: not again on the attempt that failed.
        stored = await store.load("failed-1")
        assert stored is not None
        bodies = b"".join(cp.payload for cp in stored.checkpoints)
        assert bodies.count(b"the failing line") == 1
    finally:
        await store.close()


async def test_a_killed_run_s_record_gets_the_tracebacks_its_checkpoints_hold(drt: Runtime, store_url: str) -> None:
    # A run killed while going on is shown from its checkpoints (its header still says running).
    wf = Workflow(name="orders", steps=[Task(name="parse", agent=parse_order)], checkpointing={"storage": store_url})
    await wf.run("5 plums", run_id="killed")
    store = await open_store(store_url)
    try:
        details = await read_run(store, "killed")
        assert details is not None and details.state is not None
        shown = ExecutionRecord(run_id="killed", workflow="orders", timestamp=details.record.timestamp,
                                status=TaskStatus.RUNNING)
        progress_from_state(shown, details.state)
        (parse,) = shown.tasks
        assert parse.traceback is not None and FAILING_LINE in parse.traceback
        assert parse.attempts[-1].traceback == parse.traceback
    finally:
        await store.close()


async def test_with_a_key_no_traceback_is_stored_in_plaintext(drt: Runtime, store_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fernet = pytest.importorskip("cryptography.fernet")
    monkeypatch.setenv("PYAGENT_STATE_KEY", fernet.Fernet.generate_key().decode())

    def leak(x: Any) -> Any:
        secret_local_marker = "sk-live-0123456789"
        raise PermissionError(f"token {secret_local_marker} refused")

    orch = Orchestrator(store=store_url)
    wf = orch.add_workflow(Workflow(name="sealed", steps=[Task(name="call", agent=leak)],
                                    checkpointing={"storage": store_url}))
    result = await orch.run_workflow(wf, None, run_id="sealed-1")
    assert result.traceback is not None and "sk-live-0123456789" in result.traceback
    store = await open_store(store_url)
    try:
        stored = await store.load("sealed-1")
        assert stored is not None and stored.checkpoints
        for raw in [stored.header.payload, *(cp.payload for cp in stored.checkpoints)]:
            assert b"sk-live" not in raw and b"secret_local_marker" not in raw and b"Traceback" not in raw
        details = await read_run(store, "sealed-1")
        assert details is not None
        assert "secret_local_marker" in (details.record.tasks[0].traceback or "")
        assert details.record.traceback == result.traceback
    finally:
        await store.close()


# -- saved before tracebacks were kept ------------------------------------------------------------


def test_a_state_saved_without_tracebacks_still_loads() -> None:
    body = {"workflow": "old", "run_id": "r", "status": "failed", "current_task": None, "error": "boom",
            "started_at": 1.0, "finished_at": 2.0, "resumes": [], "trigger": None, "input": 1, "shared": {},
            "order": ["a"],
            "tasks": [{"name": "a", "status": "failed", "agent": "a", "output": None, "error": "KeyError: 'x'",
                       "started_at": 1.0, "finished_at": 2.0, "reused": False,
                       "attempts": [{"number": 1, "agent": "a", "started_at": 1.0, "finished_at": 2.0,
                                     "error": "KeyError: 'x'"}]}]}
    raw = codec.dumps({"format": "pyagent-state", "version": 1, "workflow": "old", "run_id": "r",
                       "state": json.dumps(body),
                       "sha256": __import__("hashlib").sha256(json.dumps(body).encode()).hexdigest()})
    state = WorkflowState.from_bytes(raw)
    task = state.tasks["a"]
    assert task.error == "KeyError: 'x'" and task.traceback is None
    assert task.attempts is not None and task.attempts[0].traceback is None
    assert task.to_result().traceback is None


def test_a_history_record_written_without_tracebacks_still_reads() -> None:
    summary = {"run_id": "r", "workflow": "old", "status": "failed", "tasks_completed": 0, "tasks_total": 1,
               "error": "task 'a' failed: KeyError: 'x'", "started_at": 1.0, "finished_at": 2.0,
               "tasks": [{"name": "a", "status": "failed", "agent": "a", "started_at": 1.0, "finished_at": 2.0,
                          "error": "KeyError: 'x'"}]}
    rec = record(summary)
    assert rec.traceback is None and rec.tasks[0].traceback is None
    assert rec.tasks[0].attempts[0].error == "KeyError: 'x'" and rec.tasks[0].attempts[0].traceback is None
    payload = codec.seal(codec.dumps({"v": 1, **summary}))
    assert ExecutionRecord.from_payload(payload, "an old record").tasks[0].traceback is None
