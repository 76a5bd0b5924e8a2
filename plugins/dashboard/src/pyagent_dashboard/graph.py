"""The workflow's graph, drawn as SVG with each task in its status colour.

From the workflow's definition when the dashboard has it (an orchestrator or a workflow file):
a sequential chain, a parallel fan-out and join, a dependency graph, conditional branches as
a decision with its two branches, and a nested workflow as a step drawn again below. Without
the definition only the recorded tasks are known, not their dependencies: they are drawn in
columns of tasks that ran at the same time, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from pyagent.plugin import ConditionalTask, Workflow
from pyagent_dashboard.svg import document, el

NODE_W, NODE_H = 160, 38
COL_W, ROW_H = 210, 60
PAD = 24


@dataclass
class Node:
    id: str
    label: str
    kind: str = "task"  # task | decision | start | end | join | nested
    status: str = "unknown"
    detail: str = ""
    reused: bool = False


@dataclass
class Graph:
    title: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    nested: list[tuple[str, Any]] = field(default_factory=list)  # (task name, workflow)
    columns: dict[str, int] | None = None  # fixed columns (recorded runs), else computed

    def add(self, node: Node) -> str:
        self.nodes.setdefault(node.id, node)
        return node.id

    def edge(self, a: str, b: str, label: str = "") -> None:
        if (a, b, label) not in self.edges:
            self.edges.append((a, b, label))


def _agent_workflow(task: Any) -> Any:
    wf = getattr(getattr(task, "agent", None), "workflow", None)
    return wf if isinstance(wf, Workflow) else None


def _task_node(g: Graph, task: Any, statuses: dict[str, Any]) -> str:
    rec = statuses.get(task.name)
    sub = _agent_workflow(task)
    node = Node(task.name, task.name, "nested" if sub is not None else "task",
                _status(rec), detail=f"runs workflow {sub.name}" if sub is not None else "",
                reused=bool(getattr(rec, "reused", False)))
    if sub is not None:
        g.nested.append((task.name, sub))
    return g.add(node)


def _status(rec: Any) -> str:
    if rec is None:
        return "unknown"
    return str(getattr(rec.status, "value", rec.status))


def _step(g: Graph, step: Any, statuses: dict[str, Any], before: list[str]) -> list[str]:
    """Add one step after ``before``; return the nodes the next step follows."""
    if isinstance(step, ConditionalTask):
        decision = g.add(Node(f"if:{step.name}", step.name, "decision", _decision_status(step, statuses)))
        for b in before:
            g.edge(b, decision)
        out = []
        for branch, label in ((step.if_true, "true"), (step.if_false, "false")):
            if branch is None:
                out.append(decision)
                continue
            node = _task_node(g, branch, statuses)
            g.edge(decision, node, label)
            out.append(node)
        return out
    node = _task_node(g, step, statuses)
    for b in before:
        g.edge(b, node)
    return [node]


def _decision_status(step: Any, statuses: dict[str, Any]) -> str:
    seen = [_status(statuses.get(b.name)) for b in step.branches]
    if any(s in ("completed", "failed", "running") for s in seen):
        return "completed"
    return "unknown" if all(s == "unknown" for s in seen) else seen[0]


def from_definition(workflow: Any, records: list[Any]) -> Graph:
    """The graph of ``workflow``'s definition, coloured by the run's task ``records``."""
    statuses = {r.name: r for r in records}
    g = Graph(workflow.name)
    start = g.add(Node("start", "start", "start", "completed" if records else "unknown"))
    pattern = workflow.pattern_name
    steps = list(workflow.steps)
    has_deps = any(getattr(s, "dependencies", None) for s in steps)
    if pattern == "parallel":
        ends: list[str] = []
        for step in steps:
            ends += _step(g, step, statuses, [start])
        join = g.add(Node("join", "reducer" if workflow.reducer is not None else "join", "join"))
        for e in ends:
            g.edge(e, join)
        last = [join]
    elif pattern == "graph" or (has_deps and pattern != "sequential"):
        last = _dag(g, steps, statuses, start)
    else:
        last = [start]
        for step in steps:
            last = _step(g, step, statuses, last)
    end = g.add(Node("end", "end", "end"))
    for e in last:
        g.edge(e, end)
    return g


def _dag(g: Graph, steps: list[Any], statuses: dict[str, Any], start: str) -> list[str]:
    """Steps wired by their dependencies (names of tasks or of conditional steps)."""
    exits: dict[str, list[str]] = {}  # a step's name (and its branches' names) -> the nodes it ends in
    pending = list(steps)
    for _ in range(len(steps) + 1):
        progressed = False
        for step in list(pending):
            deps = list(getattr(step, "dependencies", []) or [])
            if any(d not in exits for d in deps):
                continue
            before = [n for d in deps for n in exits[d]] or [start]
            out = _step(g, step, statuses, before)
            exits[step.name] = out
            if isinstance(step, ConditionalTask):
                for b in step.branches:
                    exits[b.name] = [b.name]
            pending.remove(step)
            progressed = True
        if not pending or not progressed:
            break
    for step in pending:  # a dependency the definition does not resolve: drawn unconnected
        exits[step.name] = _step(g, step, statuses, [start])
    used = {a for a, _, _ in g.edges}
    return [n for n in g.nodes if n not in used and n != start]


def from_records(records: list[Any], title: str) -> Graph:
    """Columns of tasks that ran at the same time, in the order they started (no dependencies known)."""
    g = Graph(title, columns={})
    assert g.columns is not None
    ran = sorted((r for r in records if r.started_at is not None), key=lambda r: r.started_at)
    column, column_end = 0, None
    for rec in ran:
        if column_end is not None and rec.started_at >= column_end:
            column += 1
            column_end = None
        end = rec.finished_at if rec.finished_at is not None else float("inf")
        column_end = end if column_end is None else max(column_end, end)
        g.add(Node(rec.name, rec.name, "task", _status(rec), reused=bool(rec.reused)))
        g.columns[rec.name] = column
    last = column + (1 if ran else 0)
    for rec in records:
        if rec.started_at is None:
            g.add(Node(rec.name, rec.name, "task", _status(rec)))
            g.columns[rec.name] = last
    return g


def _layout(g: Graph) -> dict[str, tuple[int, int]]:
    if g.columns is not None:
        col = dict(g.columns)
    else:
        col = {n: 0 for n in g.nodes}
        for _ in range(len(g.nodes)):  # longest path from the sources (the graph has no cycle)
            changed = False
            for a, b, _label in g.edges:
                if col[b] < col[a] + 1:
                    col[b] = col[a] + 1
                    changed = True
            if not changed:
                break
    rows: dict[int, int] = {}
    place = {}
    for node in g.nodes:
        c = col[node]
        place[node] = (c, rows.get(c, 0))
        rows[c] = rows.get(c, 0) + 1
    return place


def draw(g: Graph) -> Markup:
    place = _layout(g)
    columns = max((c for c, _ in place.values()), default=0) + 1
    tallest = max((sum(1 for c, _ in place.values() if c == col) for col in range(columns)), default=1)
    width = PAD * 2 + columns * COL_W
    height = PAD * 2 + tallest * ROW_H

    def centre(node: str) -> tuple[float, float]:
        c, r = place[node]
        in_col = sum(1 for cc, _ in place.values() if cc == c)
        offset = (tallest - in_col) * ROW_H / 2
        return PAD + c * COL_W + NODE_W / 2, PAD + offset + r * ROW_H + NODE_H / 2

    def half_width(node: str) -> float:
        kind = g.nodes[node].kind
        return 9 if kind in ("start", "end") else 20 if kind in ("decision", "join") else NODE_W / 2

    body: list[str] = []
    for a, b, label in g.edges:
        (ax, ay), (bx, by) = centre(a), centre(b)
        ax, bx = ax + half_width(a), bx - half_width(b)
        mid = (ax + bx) / 2
        path = f"M {ax:.1f} {ay:.1f} C {mid:.1f} {ay:.1f}, {mid:.1f} {by:.1f}, {bx:.1f} {by:.1f}"
        body.append(el("path", d=path, class_="edge", marker_end="url(#arrow)"))
        if label:
            body.append(el("text", label, x=(ax + bx) / 2, y=(ay + by) / 2 - 4, class_="edge-label",
                           text_anchor="middle"))
    for node in g.nodes.values():
        cx, cy = centre(node.id)
        tip = f"{node.label}: {node.status}" + (" (reused after a resume)" if node.reused else "") + (
            f" — {node.detail}" if node.detail else "")
        cls = f"node node-{node.kind} status-{node.status}" + (" reused" if node.reused else "")
        if node.kind in ("start", "end"):
            shape = el("circle", cx=cx, cy=cy, r=8, class_="terminal")
            text = el("text", node.label, x=cx, y=cy + 24, class_="node-note", text_anchor="middle")
        elif node.kind in ("decision", "join"):
            points = f"{cx},{cy - 20} {cx + 20},{cy} {cx},{cy + 20} {cx - 20},{cy}"
            shape = el("polygon", points=points, class_="shape")
            label = node.label if len(node.label) <= 28 else node.label[:27] + "…"
            text = el("text", label, x=cx, y=cy + 34, class_="node-note", text_anchor="middle")
        else:
            label = node.label if len(node.label) <= 20 else node.label[:19] + "…"
            shape = el("rect", x=cx - NODE_W / 2, y=cy - NODE_H / 2, width=NODE_W, height=NODE_H, rx=6,
                       class_="shape")
            if node.kind == "nested":
                shape = Markup(shape + el("rect", x=cx - NODE_W / 2 + 4, y=cy - NODE_H / 2 + 4,
                                          width=NODE_W - 8, height=NODE_H - 8, rx=4, class_="inner"))
                label = label + " ›"
            if node.reused:
                label = "↺ " + label
            text = el("text", label, x=cx, y=cy + 4, class_="node-label", text_anchor="middle")
        body.append(el("g", el("title", tip), shape, text, class_=cls, data_node=node.id,
                       data_status=node.status))
    return document(width, height, body, label=f"graph of workflow {g.title}", class_="graph")
