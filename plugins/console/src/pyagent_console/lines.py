"""Plain progress: one line per event, no control codes, for CI logs and files.

Written straight to the file, not through rich: a line costs about a microsecond, so a
1,000-task run logs at the speed it runs. Lines are flushed at most twice a second and at
the end of every run.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from pyagent.plugin import Event, events
from pyagent_console.nesting import depth_var

_FLUSH_EVERY = 0.5


def plain(value: Any) -> str:
    """Text from an agent or its error on one line and without control codes (escape sequences,
    line breaks), which would otherwise reach the log as they are."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else " " if ch in "\r\n\t" else repr(ch)[1:-1] for ch in text)


def _ms(seconds: Any) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"  {seconds * 1000:.1f} ms"
    return f"  {seconds:.2f} s"


class PlainLines:
    """Event lines for a file that is not a terminal."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self._second = -1
        self._stamp = ""
        self._flushed = time.monotonic()
        self._runs: dict[str, dict[str, int]] = {}  # run id -> tasks by status
        self._depths: dict[str, int] = {}
        self._indents: dict[str, str] = {}  # run id -> the indent of its tasks' lines
        self._handlers = {
            events.WORKFLOW_STARTED: self._run_started,
            events.WORKFLOW_COMPLETED: self._run_ended,
            events.WORKFLOW_FAILED: self._run_ended,
            events.WORKFLOW_CANCELLED: self._run_ended,
            events.TASK_STARTED: self._task_started,
            events.TASK_COMPLETED: self._task_completed,
            events.TASK_FAILED: self._task_ended,
            events.TASK_CANCELLED: self._task_ended,
            events.TASK_SKIPPED: self._task_ended,
            events.TASK_REUSED: self._task_ended,
            events.TASK_RETRYING: self._retrying,
            events.TASK_FALLBACK: self._fallback,
            events.HANDOFF: self._handoff,
            events.CIRCUIT_CHANGED: self._circuit,
            events.TEAM_STARTED: self._team,
            events.TEAM_TURN: self._team,
            events.TEAM_ROUND: self._team,
            events.TEAM_COMPLETED: self._team,
            events.TEAM_FAILED: self._team,
            events.TOOL_STARTED: self._tool,
            events.TOOL_CALLED: self._tool,
            events.TOOL_FAILED: self._tool,
            events.WORKFLOW_WAITING: self._waiting,
            events.WORKFLOW_SUSPENDED: self._suspended,
            events.TASK_WAITING: self._task_ended,
        }
        self.event_kinds = frozenset(self._handlers)

    def on_event(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def close(self) -> None:
        self.file.flush()

    # -- writing ---------------------------------------------------------------------------

    def _write(self, depth: int, text: str, flush: bool = False, when: float | None = None) -> None:
        self._line(time.time() if when is None else when, "  " * depth, text, flush)

    def _line(self, when: float, indent: str, text: str, flush: bool = False) -> None:
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%H:%M:%S", time.localtime(when))
        # One write() per whole line and no lock of ours: a text file's write holds the GIL for
        # the line, so lines from several threads interleave but never mix (and a lock costs
        # more than the write on this path).
        self.file.write(f"{self._stamp}  {indent}{text}\n")
        if flush or when - self._flushed > _FLUSH_EVERY:
            self._flushed = when
            self.file.flush()

    def _depth(self, e: Event) -> int:
        return self._depths.get(e.run_id, 0) + 1

    # -- events ----------------------------------------------------------------------------

    def _run_started(self, e: Event) -> None:
        depth = depth_var.get()
        self._depths[e.run_id] = depth
        self._indents[e.run_id] = "  " * (depth + 1)
        self._runs[e.run_id] = {}
        self._write(depth, f"▶ workflow '{e.workflow}' started (run {e.run_id[:8]})", when=e.timestamp)

    def _run_ended(self, e: Event) -> None:
        depth = self._depths.pop(e.run_id, 0)
        self._indents.pop(e.run_id, None)
        counts = self._runs.pop(e.run_id, {})
        done = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no tasks"
        status = e.kind.rsplit(".", 1)[1]
        mark = {"completed": "✓", "failed": "✗"}.get(status, "⊘")
        took = e.data.get("duration")
        text = f"{mark} workflow '{e.workflow}' {status}" + (f" in {took:.3f} s" if took is not None else "")
        text += f": {done}"
        if e.data.get("error"):
            text += f"; error: {plain(e.data['error'])}"
        self._write(depth, text, flush=True)

    # The two events every task sends: kept short, they are most of what a long run logs.

    def _task_started(self, e: Event) -> None:
        indent = self._indents.get(e.run_id, "  ")
        # In the task's own context: what its agent starts (a sub-workflow, a team) nests deeper.
        depth_var.set((len(indent) >> 1) + 1)
        self._line(e.timestamp, indent, f"▶ {e.task}")

    def _task_completed(self, e: Event) -> None:
        indent = self._indents.get(e.run_id, "  ")
        depth_var.set((len(indent) >> 1) - 1)  # back to the run's own depth, in the task's context
        counts = self._runs.get(e.run_id)
        if counts is not None:
            counts["completed"] = counts.get("completed", 0) + 1
        data = e.data
        took = data.get("duration")
        text = f"✓ {e.task}" if took is None else (
            f"✓ {e.task}  {took * 1000:.1f} ms" if took < 1 else f"✓ {e.task}  {took:.2f} s")
        attempts = data.get("attempts")
        if attempts is not None and attempts > 1:
            text = f"{text}  ({attempts} attempts)"
        self._line(e.timestamp, indent, text)

    def _task_ended(self, e: Event) -> None:
        depth_var.set(self._depths.get(e.run_id, 0))
        counts = self._runs.get(e.run_id)
        status = "reused" if e.kind == events.TASK_REUSED else (e.status or e.kind.rsplit(".", 1)[1])
        if counts is not None and e.kind != events.TASK_WAITING:  # a waiting task ends later, and counts then
            counts[status] = counts.get(status, 0) + 1
        data = e.data
        depth = self._depth(e)
        kind = e.kind
        if kind == events.TASK_FAILED:
            attempts = data.get("attempts") or 1
            self._write(depth, f"✗ {e.task}: {plain(data.get('error'))}  ({attempts} attempt{'s' if attempts != 1 else ''})")
        elif kind == events.TASK_SKIPPED:
            reason = data.get("reason")
            self._write(depth, f"- {e.task} skipped" + (f" ({plain(reason)})" if reason else ""))
        elif kind == events.TASK_CANCELLED:
            self._write(depth, f"⊘ {e.task} cancelled")
        elif kind == events.TASK_WAITING:
            self._write(depth, f"⏸ {e.task} waits for an answer: {data.get('question')} "
                               f"(question {data.get('interrupt')})", flush=True)
        else:
            self._write(depth, f"= {e.task} completed earlier, output reused")

    def _retrying(self, e: Event) -> None:
        delay = e.data.get("delay") or 0
        self._write(self._depth(e), f"↻ {e.task} attempt {e.data.get('attempt')} failed "
                                    f"({plain(e.data.get('error'))}), retrying in {delay:g} s")

    def _fallback(self, e: Event) -> None:
        self._write(self._depth(e), f"↪ {e.task} failed ({plain(e.data.get('error'))}), "
                                    f"falling back to {e.data.get('fallback')} ({e.data.get('strategy')})")

    def _handoff(self, e: Event) -> None:
        reason = e.data.get("reason")
        self._write(depth_var.get(), f"⇄ handoff {e.data.get('from_agent')} → {e.data.get('to_agent')}"
                                     + (f": {plain(reason)}" if reason else ""))

    def _circuit(self, e: Event) -> None:
        self._write(self._depths.get(e.run_id, depth_var.get()),
                    f"⚡ circuit breaker of '{e.workflow}': {e.data.get('from')} → {e.data.get('to')} "
                    f"({plain(e.data.get('reason'))})", flush=True)

    def _suspended(self, e: Event) -> None:
        depth = self._depths.pop(e.run_id, 0)
        self._indents.pop(e.run_id, None)
        self._runs.pop(e.run_id, None)
        asked = len(e.data.get("interrupts") or ())
        self._write(depth, f"⏸ workflow '{e.workflow}' suspended: it waits for {asked} answer(s) and goes on "
                           f"once answered (run {e.run_id[:8]})", flush=True)

    def _waiting(self, e: Event) -> None:
        self._write(self._depths.get(e.run_id, 0), f"⏸ workflow '{e.workflow}' waiting (run {e.run_id[:8]})",
                    flush=True)

    def _team(self, e: Event) -> None:
        depth = depth_var.get()
        data = e.data
        pattern = data.get("pattern") or e.workflow
        kind = e.kind
        if kind == events.TEAM_STARTED:
            agents = data.get("agents")
            text = f"◆ {pattern} started" + (f" with {', '.join(map(str, agents))}" if agents else "")
        elif kind == events.TEAM_TURN:
            depth += 1
            where = ", ".join(f"{k} {data[k]}" for k in ("round", "phase", "step", "subtask") if data.get(k) is not None)
            mark = "✗" if e.status == "failed" else "·"
            text = f"{mark} {e.task}" + (f" ({where})" if where else "")
        elif kind == events.TEAM_ROUND:
            text = f"◆ {pattern} round {data.get('round')} done"
            if data.get("agreement") is not None:
                text += f": agreement {data['agreement']:.2f}"
        elif kind == events.TEAM_COMPLETED:
            text = f"◆ {pattern} completed" + (f" after {data['rounds']} round(s)" if data.get("rounds") else "")
        else:
            text = f"◆ {pattern} failed: {plain(data.get('error'))}"
        self._write(depth, text)

    def _tool(self, e: Event) -> None:
        depth = self._depth(e) + 1
        tool = e.data.get("tool")
        if e.kind == events.TOOL_STARTED:
            self._write(depth, f"⚙ {e.data.get('agent')} calls {tool}")
        elif e.kind == events.TOOL_CALLED:
            self._write(depth, f"✓ {tool}{_ms(e.data.get('duration'))}")
        else:
            self._write(depth, f"✗ {tool}: {plain(e.data.get('error'))}")
