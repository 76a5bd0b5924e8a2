"""The live terminal view: every run in progress, its tasks, nested workflows and teams.

Events only update plain state under a lock; rich's ``Live`` redraws from it in its own
thread at most ``refresh_per_second`` times, so a run pays for bookkeeping, not for drawing.
A long run shows its running tasks and its latest finished ones (``max_rows``), not all.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from typing import Any

from pyagent.plugin import Event, events
from pyagent_console.lines import plain
from pyagent_console.nesting import where_var


def _text(value: Any) -> str:
    """What agents, tasks and errors say, as literal text in rich markup: ``[/]`` in an error
    message must not be read as a closing tag (rich would refuse to draw the view), and its
    control codes must not reach the terminal."""
    from rich.markup import escape

    return escape(plain(value))

_MARKS = {"running": "[yellow]▶[/]", "completed": "[green]✓[/]", "failed": "[red]✗[/]",
          "skipped": "[dim]-[/]", "cancelled": "[magenta]⊘[/]", "reused": "[cyan]=[/]",
          "waiting": "[blue]⏸[/]"}


class TaskView:
    __slots__ = ("agent", "attempts", "children", "duration", "name", "notes", "started", "status")

    def __init__(self, name: str, agent: str | None) -> None:
        self.name, self.agent = name, agent
        self.status = "running"
        self.started = time.monotonic()
        self.duration: float | None = None
        self.attempts = 1
        self.notes: list[str] = []
        self.children: list[Any] = []  # nested RunView and TeamView


class RunView:
    def __init__(self, e: Event, parent: tuple[str, str | None] | None) -> None:
        self.workflow, self.run_id, self.parent = e.workflow, e.run_id, parent
        self.started = time.monotonic()
        self.tasks: dict[str, TaskView] = {}
        self.notes: list[str] = []
        self.status = "running"


class TeamView:
    def __init__(self, e: Event) -> None:
        self.pattern = str(e.data.get("pattern") or e.workflow)
        self.round = 0
        self.turns = 0
        self.agreement: float | None = None
        self.status = "running"
        self.last: str = ""


class LiveView:
    """The live display and the summary printed when a run ends."""

    def __init__(self, console: Any, *, refresh_per_second: float, max_rows: int, summary: bool) -> None:
        self.console = console
        self.refresh_per_second = refresh_per_second
        self.max_rows = max_rows
        self.summary = summary
        self.renders = 0
        self._lock = threading.RLock()
        self._runs: dict[str, RunView] = {}
        self._top: list[Any] = []  # top-level RunView / TeamView in order of start
        self._teams: dict[tuple[str, str], TeamView] = {}
        self._tokens: dict[tuple[str, str | None], contextvars.Token[Any]] = {}
        self._live: Any = None
        self._handlers = {
            events.WORKFLOW_STARTED: self._run_started,
            events.WORKFLOW_COMPLETED: self._run_ended,
            events.WORKFLOW_FAILED: self._run_ended,
            events.WORKFLOW_CANCELLED: self._run_ended,
            events.WORKFLOW_SUSPENDED: self._run_ended,
            events.WORKFLOW_WAITING: self._run_waiting,
            events.TASK_WAITING: self._task_ended,
            events.TASK_STARTED: self._task_started,
            events.TASK_COMPLETED: self._task_ended,
            events.TASK_FAILED: self._task_ended,
            events.TASK_CANCELLED: self._task_ended,
            events.TASK_SKIPPED: self._task_ended,
            events.TASK_REUSED: self._task_ended,
            events.TASK_RETRYING: self._retrying,
            events.TASK_FALLBACK: self._fallback,
            events.HANDOFF: self._handoff,
            events.CIRCUIT_CHANGED: self._circuit,
            events.TEAM_STARTED: self._team_started,
            events.TEAM_TURN: self._team_event,
            events.TEAM_ROUND: self._team_event,
            events.TEAM_COMPLETED: self._team_ended,
            events.TEAM_FAILED: self._team_ended,
        }
        self.event_kinds = frozenset(self._handlers)

    def on_event(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            with self._lock:
                handler(event)

    def close(self) -> None:
        with self._lock:
            self._stop()

    # -- the live display ------------------------------------------------------------------

    def _start(self) -> None:
        if self._live is None:
            from rich.live import Live

            self._live = Live(get_renderable=self.render, console=self.console, transient=True,
                              refresh_per_second=self.refresh_per_second, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def _stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def render(self) -> Any:
        """What the live display shows now (rich renderables)."""
        from rich.console import Group
        from rich.tree import Tree

        with self._lock:
            self.renders += 1
            trees = []
            for item in self._top:
                tree = Tree(self._label(item))
                self._fill(tree, item)
                trees.append(tree)
            return Group(*trees)

    def _label(self, item: Any) -> str:
        if isinstance(item, TeamView):
            text = f"[bold]◆ {_text(item.pattern)}[/] round {item.round or 1}, {item.turns} turn(s)"
            if item.agreement is not None:
                text += f", agreement {item.agreement:.2f}"
            if item.last:
                text += f"  [dim]{_text(item.last)}[/]"
            return text
        done = sum(1 for t in item.tasks.values() if t.status != "running")
        text = (f"[bold]{_MARKS.get(item.status, '▶')} {_text(item.workflow)}[/] [dim]run {item.run_id[:8]}[/]  "
                f"{done}/{len(item.tasks)} tasks  {time.monotonic() - item.started:.1f} s")
        if item.notes:
            text += "  " + "  ".join(item.notes[-2:])
        return text

    def _fill(self, tree: Any, item: Any) -> None:
        if isinstance(item, TeamView):
            return
        tasks = list(item.tasks.values())
        running = [t for t in tasks if t.status == "running"]
        finished = [t for t in tasks if t.status != "running"]
        room = max(self.max_rows - len(running), 0)
        kept = finished[len(finished) - room:] if room else []
        hidden = len(finished) - len(kept)
        if hidden > 0:
            tree.add(f"[dim]… {hidden} earlier task(s) finished[/]")
        visible = {id(t) for t in running} | {id(t) for t in kept}
        for task in tasks:
            if id(task) in visible:
                branch = tree.add(self._task_line(task))
                for child in task.children:
                    self._fill(branch.add(self._label(child)), child)

    def _task_line(self, task: TaskView) -> str:
        took = task.duration if task.duration is not None else time.monotonic() - task.started
        text = f"{_MARKS.get(task.status, '?')} {_text(task.name)}  [dim]{took * 1000:.0f} ms[/]"
        if task.attempts > 1:
            text += f"  attempts {task.attempts}"
        if task.notes:
            text += "  " + "  ".join(task.notes[-3:])
        return text

    # -- events (under the lock) -----------------------------------------------------------

    def _run_started(self, e: Event) -> None:
        parent = where_var.get()
        run = RunView(e, parent)
        self._runs[e.run_id] = run
        host = self._task(parent)
        if host is not None:
            host.children.append(run)
        else:
            run.parent = None
            self._top.append(run)
            self._start()

    def _run_ended(self, e: Event) -> None:
        run = self._runs.pop(e.run_id, None)
        if run is None:  # refused by an open circuit breaker before it started
            if e.data.get("circuit") == "open":
                self.console.print(f"[red]✗ workflow '{_text(e.workflow)}' refused: {_text(e.data.get('error'))}[/]")
            return
        # A suspended run has not ended: it waits for answers and goes on later (maybe elsewhere).
        run.status = "waiting" if e.kind == events.WORKFLOW_SUSPENDED else e.kind.rsplit(".", 1)[1]
        if run.parent is not None:
            return
        self._top.remove(run)
        if not any(isinstance(item, RunView) for item in self._top):
            self._stop()
        if self.summary:
            self.console.print(self._summary(run, e))

    def _run_waiting(self, e: Event) -> None:
        run = self._runs.get(e.run_id)
        if run is not None:
            run.status = "waiting"

    def _summary(self, run: RunView, e: Event) -> Any:
        from rich.table import Table

        took = e.data.get("duration")
        title = f"{_text(run.workflow)}: {run.status}" + (f" in {took:.3f} s" if took is not None else "")
        table = Table(title=title, caption=f"run {run.run_id}", title_justify="left")
        for column in ("task", "status", "duration", "attempts", "notes"):
            table.add_column(column, justify="right" if column in ("duration", "attempts") else "left")
        tasks = list(run.tasks.values())
        # A long run: its failed tasks always, then the first ones, within max_rows.
        picked = [t for t in tasks if t.status != "completed"][: self.max_rows]
        room = self.max_rows - len(picked)
        picked += [t for t in tasks if t.status == "completed"][:max(room, 0)]
        order = {id(t): i for i, t in enumerate(tasks)}
        for task in sorted(picked, key=lambda t: order[id(t)]):
            duration = "" if task.duration is None else f"{task.duration * 1000:.1f} ms"
            table.add_row(_text(task.name), f"{_MARKS.get(task.status, '')} {task.status}", duration,
                          str(task.attempts), " ".join(task.notes))
        if len(tasks) > len(picked):
            table.add_row(f"… {len(tasks) - len(picked)} more completed", "", "", "", "")
        if e.data.get("error"):
            table.caption = f"run {run.run_id}: {_text(e.data['error'])}"
        return table

    def _task(self, where: tuple[str, str | None] | None) -> TaskView | None:
        if where is None:
            return None
        run = self._runs.get(where[0])
        return None if run is None or where[1] is None else run.tasks.get(where[1])

    def _task_started(self, e: Event) -> None:
        run = self._runs.get(e.run_id)
        if run is None or e.task is None:
            return
        run.tasks[e.task] = TaskView(e.task, e.data.get("agent"))
        if run.status == "waiting":  # answered: it runs again
            run.status = "running"
        self._tokens[(e.run_id, e.task)] = where_var.set((e.run_id, e.task))

    def _task_ended(self, e: Event) -> None:
        token = self._tokens.pop((e.run_id, e.task), None)
        if token is not None:
            # Ended in another context than it started: nothing to undo there.
            with contextlib.suppress(ValueError):
                where_var.reset(token)
        run = self._runs.get(e.run_id)
        if run is None or e.task is None:
            return
        task = run.tasks.get(e.task)
        if task is None:
            task = run.tasks[e.task] = TaskView(e.task, e.data.get("agent"))
        task.status = "reused" if e.kind == events.TASK_REUSED else (e.status or "completed")
        task.duration = e.data.get("duration")
        task.attempts = e.data.get("attempts") or task.attempts
        if e.kind == events.TASK_FAILED:
            task.notes.append(f"[red]{_text(e.data.get('error'))}[/]")
        elif e.kind == events.TASK_WAITING:
            task.notes.append(f"asks: {_text(e.data.get('question'))}")

    def _retrying(self, e: Event) -> None:
        task = self._task((e.run_id, e.task))
        if task is not None:
            task.attempts = int(e.data.get("attempt") or task.attempts) + 1
            task.notes.append(f"↻ {_text(e.data.get('error'))}")

    def _fallback(self, e: Event) -> None:
        task = self._task((e.run_id, e.task))
        if task is not None:
            task.notes.append(f"↪ fallback {_text(e.data.get('fallback'))}")

    def _handoff(self, e: Event) -> None:
        note = f"⇄ {_text(e.data.get('from_agent'))} → {_text(e.data.get('to_agent'))}"
        task = self._task((e.run_id, e.task)) or self._task(where_var.get())
        if task is not None:
            task.notes.append(note)

    def _circuit(self, e: Event) -> None:
        note = f"⚡ circuit {e.data.get('from')} → {e.data.get('to')}"
        run = self._runs.get(e.run_id)
        if run is not None:
            run.notes.append(note)
        else:
            self.console.print(f"⚡ circuit breaker of '{_text(e.workflow)}': {e.data.get('from')} → {e.data.get('to')}")

    def _team_started(self, e: Event) -> None:
        team = TeamView(e)
        self._teams[(e.run_id, team.pattern)] = team
        host = self._task(where_var.get())
        if host is not None:
            host.children.append(team)
        else:
            self._top.append(team)
            self._start()

    def _team_event(self, e: Event) -> None:
        team = self._teams.get((e.run_id, str(e.data.get("pattern") or e.workflow)))
        if team is None:
            return
        team.round = int(e.data.get("round") or team.round)
        if e.kind == events.TEAM_TURN:
            team.turns += 1
            team.last = f"{e.task}: {str(e.data.get('output'))[:40]}"
        elif e.data.get("agreement") is not None:
            team.agreement = float(e.data["agreement"])

    def _team_ended(self, e: Event) -> None:
        team = self._teams.pop((e.run_id, str(e.data.get("pattern") or e.workflow)), None)
        if team is None:
            return
        team.status = e.kind.rsplit(".", 1)[1]
        team.last = team.status
        if team in self._top:
            self._top.remove(team)
            self.console.print(f"◆ {_text(team.pattern)} {team.status} after {team.round or 1} round(s)")
            if not any(isinstance(item, RunView) for item in self._top) and not self._top:
                self._stop()
