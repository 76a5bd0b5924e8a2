"""Tables and the versioned migrations that create them.

The database records every migration applied in ``pyagent_schema_version``. ``migrate`` brings
an older database up to ``LATEST`` inside one transaction and refuses a database written by a
newer pyagent-sql, so an old process never writes rows a newer one cannot read.

Versions: 1 created the runs and checkpoints tables; 2 added ``pyagent_leases`` (who owns
each run, until when: see the kernel's store protocol); 3 added ``pyagent_interrupts`` (the
questions runs ask people, and their answers); 4 added ``pyagent_cancels`` (cancel requests of
queued and running runs) and a partial index on the runs the queue may hand out; 5 added
``pyagent_breakers`` (circuit breakers shared by every process on the database: one row per
workflow, replaced by compare-and-swap).

Adding version N: freeze the ``_define_v*`` functions as they are, write ``_migrate_to_N``
(ALTER/CREATE on ``conn``), register it in ``MIGRATIONS``, bump ``LATEST`` and describe the
new shape in ``define_tables``; fresh databases replay every migration in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    literal_column,
    select,
)

from .errors import SchemaVersionError

LATEST = 5
RUNS = "pyagent_runs"
CHECKPOINTS = "pyagent_checkpoints"
LEASES = "pyagent_leases"
INTERRUPTS = "pyagent_interrupts"
CANCELS = "pyagent_cancels"
#: Statuses of runs the queue hands out (``dequeue_runs``): queued ones and orphans.
READY_STATUSES = ("pending", "running")
BREAKERS = "pyagent_breakers"
VERSIONS = "pyagent_schema_version"


def _define_version_table(md: MetaData) -> Table:
    return Table(
        VERSIONS,
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", Double, nullable=False),
        Column("description", Text, nullable=False),
    )


def _define_v1(md: MetaData) -> tuple[Table, Table]:
    runs = Table(
        RUNS,
        md,
        Column("run_id", Text, primary_key=True),
        Column("workflow", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("started_at", Double, nullable=False),
        Column("finished_at", Double, nullable=True),
        Column("payload", LargeBinary, nullable=False),
        Index("ix_pyagent_runs_workflow_started", "workflow", "started_at"),
        Index("ix_pyagent_runs_status_started", "status", "started_at"),
        Index("ix_pyagent_runs_started", "started_at"),
    )
    checkpoints = Table(
        CHECKPOINTS,
        md,
        Column("run_id", Text, primary_key=True),
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("kind", String(8), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", Double, nullable=False),
        CheckConstraint("kind IN ('full', 'delta')", name="ck_pyagent_checkpoints_kind"),
    )
    return runs, checkpoints


def _define_v2(md: MetaData) -> Table:
    # One row per claimed run, apart from the header: a fresh run is claimed before it has one.
    return Table(
        LEASES,
        md,
        Column("run_id", Text, primary_key=True),
        Column("owner", Text, nullable=False),
        Column("token", Text, nullable=False),
        Column("claimed_at", Double, nullable=False),
        Column("expires_at", Double, nullable=False),
        Index("ix_pyagent_leases_expires", "expires_at"),
        Index("ix_pyagent_leases_owner", "owner", "expires_at"),
    )


def _define_v3(md: MetaData) -> Table:
    # One row per question a run asks a person; answered by anyone, so apart from the run's
    # lease-fenced rows. (run_id, task, position, level) is where the run asked it: a task that
    # runs again finds its question (and answer) there, whatever process it runs in.
    return Table(
        INTERRUPTS,
        md,
        Column("id", Text, primary_key=True),
        Column("run_id", Text, nullable=False),
        Column("workflow", Text, nullable=False),
        Column("task", Text, nullable=False),
        Column("position", Integer, nullable=False),
        Column("level", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("asked_at", Double, nullable=False),
        Column("deadline", Double, nullable=True),
        Column("payload", LargeBinary, nullable=False),
        Column("answer", LargeBinary, nullable=True),
        Column("answered_by", Text, nullable=True),
        Column("answered_at", Double, nullable=True),
        UniqueConstraint("run_id", "task", "position", "level", name="uq_pyagent_interrupts_asked_where"),
        CheckConstraint("status IN ('pending', 'answered', 'expired', 'escalated')",
                        name="ck_pyagent_interrupts_status"),
        Index("ix_pyagent_interrupts_status_asked", "status", "asked_at"),
        Index("ix_pyagent_interrupts_workflow_asked", "workflow", "asked_at"),
    )


def _define_v4(md: MetaData, runs: Table) -> tuple[Table, Index]:
    # A cancel request per run, apart from the run's lease-fenced rows: anyone may ask (no
    # lease), the run's owner acts on it at its next task boundary, and the queue never hands
    # out a run that has one.
    cancels = Table(
        CANCELS,
        md,
        Column("run_id", Text, primary_key=True),
        Column("reason", Text, nullable=False),
        Column("requested_at", Double, nullable=False),
    )
    # The queue reads the oldest ready runs first. Only this index's rows are scanned, in
    # order, however many finished runs the table keeps: the (status, started_at) index of v1
    # would merge two status ranges and sort them on every dequeue. Queries must spell the
    # predicate the same way (literal statuses) for the planners to use it.
    ready = _status_in(runs, READY_STATUSES)
    index = Index("ix_pyagent_runs_ready", runs.c.started_at, runs.c.run_id,
                  postgresql_where=ready, sqlite_where=ready)
    return cancels, index


def _status_in(runs: Table, statuses: tuple[str, ...]) -> Any:
    return runs.c.status.in_([literal_column(f"'{s}'", Text) for s in statuses])


def _define_v5(md: MetaData) -> Table:
    # One row per shared circuit breaker (by workflow name). The kernel runs the state machine;
    # the row is read, then replaced only if ``version`` is still the one read.
    return Table(
        BREAKERS,
        md,
        Column("name", Text, primary_key=True),
        Column("state", String(16), nullable=False),
        Column("generation", BigInteger, nullable=False),
        Column("failures", Integer, nullable=False),
        Column("opened_at", Double, nullable=True),
        Column("trials", Integer, nullable=False),
        Column("trials_ok", Integer, nullable=False),
        Column("trial_deadline", Double, nullable=True),
        Column("times_opened", BigInteger, nullable=False),
        Column("updated_at", Double, nullable=False),
        Column("version", BigInteger, nullable=False),
        CheckConstraint("state IN ('closed', 'open', 'half_open')", name="ck_pyagent_breakers_state"),
    )


@dataclass(frozen=True)
class Tables:
    """The current shape of the tables the store queries."""

    runs: Table
    checkpoints: Table
    versions: Table
    leases: Table
    interrupts: Table
    cancels: Table
    breakers: Table


def define_tables() -> Tables:
    md = MetaData()
    runs, checkpoints = _define_v1(md)
    leases = _define_v2(md)
    interrupts = _define_v3(md)
    cancels, _ = _define_v4(md, runs)
    breakers = _define_v5(md)
    return Tables(runs, checkpoints, _define_version_table(md), leases, interrupts, cancels, breakers)


def _migrate_to_1(conn: Connection) -> None:
    md = MetaData()
    _define_v1(md)
    md.create_all(conn)


def _migrate_to_2(conn: Connection) -> None:
    md = MetaData()
    _define_v2(md)
    md.create_all(conn)


def _migrate_to_3(conn: Connection) -> None:
    md = MetaData()
    _define_v3(md)
    md.create_all(conn)


def _migrate_to_4(conn: Connection) -> None:
    md = MetaData()
    runs, _ = _define_v1(md)  # the table as it stands: only the new index is created on it
    cancels, ready = _define_v4(md, runs)
    cancels.create(conn)
    ready.create(conn)


def _migrate_to_5(conn: Connection) -> None:
    md = MetaData()
    _define_v5(md)
    md.create_all(conn)


MIGRATIONS: dict[int, tuple[str, Callable[[Connection], None]]] = {
    1: ("runs and checkpoints tables", _migrate_to_1),
    2: ("run leases (one owner per run)", _migrate_to_2),
    3: ("interrupts (questions runs ask people, and their answers)", _migrate_to_3),
    4: ("run queue: cancel requests", _migrate_to_4),
    5: ("shared circuit breakers (one row per workflow)", _migrate_to_5),
}


def current_version(conn: Connection, versions: Table) -> int:
    """The newest migration recorded in the database, 0 for a fresh one."""
    if not conn.dialect.has_table(conn, VERSIONS, schema=conn.schema_for_object(versions)):
        return 0
    return int(conn.execute(select(func.max(versions.c.version))).scalar() or 0)


def migrate(conn: Connection, versions: Table, *, where: str) -> int:
    """Create or upgrade the schema to ``LATEST`` (the caller holds the transaction and a lock)."""
    found = current_version(conn, versions)
    if found > LATEST:
        raise SchemaVersionError(
            f"the database at {where} has pyagent-sql schema version {found}, but this "
            f"pyagent-sql only knows versions up to {LATEST}: upgrade pyagent-sql "
            "(pip install -U pyagent-sql) in every process that uses this database; "
            "nothing was changed"
        )
    if found < LATEST:
        versions.create(conn, checkfirst=True)
        for version in range(found + 1, LATEST + 1):
            description, step = MIGRATIONS[version]
            step(conn)
            conn.execute(
                insert(versions).values(version=version, applied_at=time.time(), description=description)
            )
    return LATEST
