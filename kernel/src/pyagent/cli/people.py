"""``pyagent pending`` and ``pyagent approve``: the questions runs ask people, and answering them."""

from __future__ import annotations

import getpass
import json
import sys
import time
from typing import Any

import click

from pyagent.cli.errors import ConfigError, one_line, plural

STORAGE_HELP = "Store URL holding the runs, e.g. sqlite://runs.db (or $PYAGENT_STORAGE, or the storage setting)."


def storage_url(storage: str | None) -> str:
    """``--storage``, else the ``storage`` setting; a clear error when neither is given."""
    if storage:
        return storage
    from pyagent.config import get_settings

    configured = get_settings().storage
    if configured:
        return configured
    raise ConfigError("give the store the runs are kept in: --storage URL (e.g. sqlite://runs.db), "
                      "$PYAGENT_STORAGE, or storage = \"...\" in pyagent.toml")


def parse_answer(text: str) -> Any:
    """``--answer`` as JSON when it is JSON (``true``, ``{"approved": true}``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def shape(schema: Any, root: dict[str, Any], depth: int = 0) -> str:
    """A JSON schema as a short shape to read in a terminal: {"approved": boolean, "comment"?: string}."""
    if not isinstance(schema, dict) or depth > 4:
        return "any"
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return shape(target, root, depth + 1)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return " | ".join(shape(s, root, depth + 1) for s in schema[key])
    kind = schema.get("type")
    if kind == "object" and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        fields = ", ".join(f"{json.dumps(name)}{'' if name in required else '?'}: {shape(sub, root, depth + 1)}"
                           for name, sub in schema["properties"].items())
        return "{" + fields + "}"
    if kind == "array":
        return f"[{shape(schema.get('items', {}), root, depth + 1)}, ...]"
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    return str(kind) if kind else "any JSON value"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@click.command()
@click.option("--storage", default=None, envvar="PYAGENT_STORAGE", help=STORAGE_HELP)
@click.option("--workflow", "workflow_name", default=None, help="Only questions of runs of this workflow.")
@click.option("--run", "run_id", default=None, help="Only the questions of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def pending(storage: str | None, workflow_name: str | None, run_id: str | None, as_json: bool) -> None:
    """List the questions runs wait to have answered, oldest first (answer with pyagent approve)."""
    import anyio

    from pyagent.durability.interrupts import list_questions
    from pyagent.durability.stores import _close, open_store
    from pyagent.errors import PyAgentError

    url = storage_url(storage)

    async def go() -> Any:
        store = await open_store(url, setting="storage")
        try:
            return await list_questions(store, workflow=workflow_name, run_id=run_id)
        finally:
            await _close(store)

    try:
        questions = anyio.run(go)
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    if as_json:
        click.echo(json.dumps([q.to_dict() for q in questions], indent=2))
        return
    if not questions:
        click.echo("No questions are waiting for an answer.")
        return
    for q in questions:
        due = f", answer by {_when(q.deadline)}" if q.deadline is not None else ""
        click.echo(f"{q.id}  run {q.run_id}  {q.workflow} / {q.task}  asked {_when(q.asked_at)}{due}")
        click.echo(f"    {q.question}")
        if q.schema:
            click.echo(f"    answer: {shape(q.schema, q.schema)}")
        if q.metadata:
            click.echo(f"    {json.dumps(q.metadata)}")
    click.echo(f"\n{plural(len(questions), 'question')} waiting. Answer one with: "
               f"pyagent approve RUN_ID QUESTION_ID --answer JSON --storage {url}")


@click.command()
@click.argument("run_id")
@click.argument("interrupt_id", required=False)
@click.option("--answer", "answer_text", required=True,
              help='The answer, as JSON (true, 42, \'{"approved": true}\'); text that is not JSON is a string.')
@click.option("--by", "answered_by", default=None, help="Who answers (default: your user name).")
@click.option("--storage", default=None, envvar="PYAGENT_STORAGE", help=STORAGE_HELP)
def approve(run_id: str, interrupt_id: str | None, answer_text: str, answered_by: str | None,
            storage: str | None) -> None:
    """Answer a question of RUN_ID (INTERRUPT_ID, or the run's only open question).

    The answer is checked against the question's schema and recorded in the store. The run
    then goes on in the process that holds it (the one that started it, or pyagent serve);
    if none does, continue it with pyagent resume RUN_ID FILE --storage URL.
    """
    import anyio

    from pyagent.durability.interrupts import list_questions, record_answer
    from pyagent.durability.ownership import _dead_here
    from pyagent.durability.stores import _close, open_store, safe_url
    from pyagent.errors import ConfigurationError, InterruptError, PyAgentError
    from pyagent.plugins import get_runtime

    url = storage_url(storage)
    value = parse_answer(answer_text)
    who = answered_by or getpass.getuser()

    async def go() -> Any:
        store = await open_store(url, setting="storage")
        try:
            chosen = interrupt_id
            if chosen is None:
                open_questions = await list_questions(store, run_id=run_id)
                if not open_questions:
                    stored = await store.load(run_id)
                    if stored is None:
                        raise ConfigurationError(f"no run {run_id!r} in {safe_url(url)}: check the run id "
                                                 "(pyagent pending lists the runs that wait)")
                    raise ConfigurationError(f"run {run_id!r} has no open question (it is {stored.header.status})")
                if len(open_questions) > 1:
                    listed = "; ".join(f"{q.id} ({q.task}: {q.question})" for q in open_questions)
                    raise ConfigurationError(f"run {run_id!r} waits on {len(open_questions)} questions: name one "
                                             f"after the run id: {listed}")
                chosen = open_questions[0].id
            answered = await record_answer(store, run_id, chosen, value, answered_by=who,
                                           clock=get_runtime().clock, where=safe_url(url))
            lease = await store.get_lease(run_id)
            held = (lease is not None and not lease.expired(get_runtime().clock.time())
                    and not _dead_here(lease.owner))
            return answered, (lease.owner if held and lease is not None else None)
        finally:
            await _close(store)

    try:
        answered, holder = anyio.run(go)
    except InterruptError as exc:
        click.echo(f"Error: {exc}", err=True)
        errors = getattr(exc, "errors", None)
        for line in errors or []:
            click.echo(f"    {line}", err=True)
        sys.exit(1)
    except PyAgentError as exc:
        raise ConfigError(one_line(exc)) from exc
    click.echo(f"Answered {answered.question!r} (question {answered.id} of run {run_id}) as "
               f"{json.dumps(answered.answer)}, by {answered.answered_by}.")
    if holder is not None:
        click.echo(f"The run goes on in the process that holds it ({holder}).")
    else:
        click.echo("The run goes on in a process that serves it (pyagent serve); if none does, continue it with: "
                   f"pyagent resume {run_id} FILE --storage {url}")


def waiting_notice(storage: str | None) -> Any:
    """A listener printing what a run waits for, and how to answer it, when it starts waiting."""

    def on_event(event: Any) -> None:
        if event.kind != "workflow.waiting":
            return
        questions = event.data.get("interrupts") or []
        click.echo(f"\n⏸  run {event.run_id} waits for {plural(len(questions), 'answer')}:")
        for q in questions:
            click.echo(f"    {q.get('task')}: {q.get('question')}  (question {q.get('interrupt')})")
            if storage:
                click.echo(f"    answer with: pyagent approve {event.run_id} {q.get('interrupt')} --answer JSON "
                           f"--storage {storage}")
        if not storage:
            click.echo("    this run has no store, so only this process could answer it: give the workflow "
                       "checkpointing={'storage': 'sqlite://runs.db'} to answer it with pyagent approve")
        click.echo("    (waiting here; Ctrl-C stops waiting, and the run can be resumed later)\n")
        sys.stdout.flush()  # the run now waits without printing: what to do must reach a pipe now

    on_event.event_kinds = frozenset({"workflow.waiting"})  # type: ignore[attr-defined]
    return on_event


COMMANDS = [pending, approve]
