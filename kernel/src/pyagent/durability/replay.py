"""Reading checkpoints back: fold a run's checkpoints into the state it last saved.

A run's checkpoints start with a **full** one (the whole state) followed by **deltas** (the task
records and ``ctx.state`` changes since the previous checkpoint). Folding the checkpoints from
the latest full one on gives the state to resume from.
"""

from __future__ import annotations

from typing import Any

from pyagent.durability import codec
from pyagent.durability.state import WorkflowState
from pyagent.durability.store import Store, StoredRun
from pyagent.durability.stores import _close, open_store, safe_url, store_failure
from pyagent.errors import StateError
from pyagent.model.tasks import TaskStatus

PAYLOAD_VERSION = 1


# -- reading ----------------------------------------------------------------------------------


def fold(stored: StoredRun, what: str, *, allow_plaintext: bool | None = None) -> WorkflowState:
    """The state a run last saved: its latest full checkpoint with every later delta applied.

    ``allow_plaintext``: accept unencrypted checkpoints although ``PYAGENT_STATE_KEY`` is set
    (see :func:`pyagent.durability.codec.unseal`).
    """
    cps = sorted(stored.checkpoints, key=lambda c: c.seq)
    if not cps:
        raise StateError(f"{what} has no checkpoints to resume from")
    base: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] = {}
    for cp in cps:
        where = f"{what} (checkpoint {cp.seq})"
        body = codec.loads(codec.unseal(cp.payload, where, allow_plaintext=allow_plaintext), where)
        if not isinstance(body, dict) or body.get("v") != PAYLOAD_VERSION:
            raise StateError(
                f"{where} has payload version {body.get('v') if isinstance(body, dict) else None!r}; "
                f"this pyagent reads version {PAYLOAD_VERSION}"
            )
        try:
            kind = body["kind"]
            records = _records(body.get("tasks", []))
            if kind == "full":
                base = dict(body)
                if not isinstance(base.setdefault("shared", {}), dict):
                    raise TypeError("ctx.state is not a mapping")
                tasks = records
                continue
            if kind != "delta":
                raise ValueError(f"unknown checkpoint kind {kind!r}")
            if base is None:
                raise StateError(f"{what} has no full checkpoint before checkpoint {cp.seq}: corrupt storage")
            tasks.update(records)
            shared = base["shared"]
            shared.update(body.get("shared_set", {}))
            for k in body.get("shared_del", []):
                shared.pop(k, None)
        except StateError:
            raise
        except Exception as exc:  # the payload parsed but is not what pyagent writes
            raise StateError(f"{where} is damaged: {type(exc).__name__}: {exc}") from None
        for field in ("status", "finished_at", "error"):
            if field in body:
                base[field] = body[field]
    if base is None:
        raise StateError(f"{what} has no full checkpoint: corrupt storage")
    # A killed run's last saved status says "running": that is what it was.
    base["tasks"] = list(tasks.values())
    return WorkflowState.decode(base, what)


def _records(raw: Any) -> dict[str, dict[str, Any]]:
    """A checkpoint's task records by name; ValueError/TypeError for anything pyagent does not write."""
    if not isinstance(raw, list):
        raise TypeError(f"its task records are a {type(raw).__name__}, not a list")
    out: dict[str, dict[str, Any]] = {}
    for t in raw:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ValueError(f"a task record has no name: {str(t)[:80]}")
        TaskStatus(str(t.get("status")))  # ValueError for an unknown status
        out[t["name"]] = t
    return out


async def load_run(url: str, run_id: str, *, allow_plaintext: bool | None = None) -> tuple[WorkflowState, int]:
    """The saved state of ``run_id`` in the store at ``url`` and the next free checkpoint seq.

    Reads only: it does not claim the run (a resume claims it before loading, see
    :func:`pyagent.runner.resume_run`).
    """
    store = await open_store(url)
    try:
        stored = await _load(store, run_id)
    finally:
        await _close(store)
    return state_of(stored, run_id, url, allow_plaintext=allow_plaintext)


async def _load(store: Store, run_id: str) -> StoredRun | None:
    try:
        return await store.load(run_id)
    except Exception as exc:
        raise store_failure(store, f"loading run {run_id!r}", exc) from exc


def state_of(stored: StoredRun | None, run_id: str, url: str, *,
             allow_plaintext: bool | None = None) -> tuple[WorkflowState, int]:
    """The folded state of a loaded run and its next checkpoint seq; StateError when there is none."""
    what = f"run {run_id!r} in {safe_url(url)}"
    if stored is None:
        raise StateError(f"no run {run_id!r} in {safe_url(url)}: check the run id (pyagent history --storage URL)")
    if not stored.checkpoints:
        # Only runs written before the header and first checkpoint were one transaction.
        raise StateError(
            f"{what} has no checkpoints to resume from: it was stopped before its first "
            f"checkpoint, so its input was never saved; start it again with "
            f"workflow.run(input, run_id={run_id!r})"
        )
    state = fold(stored, what, allow_plaintext=allow_plaintext)
    next_seq = max(c.seq for c in stored.checkpoints) + 1
    return state, next_seq


async def next_seq(store: Store, run_id: str) -> int:
    """The seq a new checkpoint of ``run_id`` gets (0 for a run the store does not have)."""
    stored = await _load(store, run_id)
    if stored is None or not stored.checkpoints:
        return 0
    return max(c.seq for c in stored.checkpoints) + 1
