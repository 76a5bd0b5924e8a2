"""Rows copied between runs with write access to the database but no key are refused.

Encryption keeps a checkpoint's content secret and unforgeable, but a Fernet token says nothing
about where it belongs: someone who can write to the tables can copy another run's encrypted
checkpoints (or run header) into a victim run's rows. Checkpoints are encrypted under a key
derived for their run, so such a copy is refused instead of feeding the other run's outputs to
the victim's next agent. Without a key, a copied full checkpoint is still recognised by the run
it names.
"""

from __future__ import annotations

from typing import Any

import pytest

from pyagent import StateError, Task, Workflow
from pyagent.durability.history import query_store

cryptography = pytest.importorskip("cryptography")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())


def workflow(url: str, seen: list[Any], fail: dict[str, bool]) -> Workflow:
    def first(x: Any) -> str:
        return f"first({x})"

    def second(x: Any) -> str:
        seen.append(x)
        if fail["on"]:
            raise RuntimeError("down")
        return f"second({x})"

    return Workflow(name="bank", pattern="sql-test-chain", checkpointing={"storage": url},
                    steps=[Task(name="first", agent=first), Task(name="second", agent=second)])


def copy_rows(db_query: Any, url: str, *, where: str) -> None:
    """As an intruder would: replace the victim's checkpoints by the other run's, with SQL only."""
    db_query(url, f"DELETE FROM pyagent_checkpoints WHERE run_id = 'victim' AND {where}")
    db_query(url, "INSERT INTO pyagent_checkpoints (run_id, seq, kind, payload, created_at) "
                  "SELECT 'victim', seq, kind, payload, created_at FROM pyagent_checkpoints "
                  f"WHERE run_id = 'other' AND {where}")


@pytest.mark.parametrize("copied", ["deltas", "every checkpoint"])
def test_encrypted_checkpoints_copied_from_another_run_are_refused(
        chain_runtime: Any, url: str, db_query: Any, key: None, copied: str) -> None:
    assert_copies_refused(url, db_query, copied, "copied from another run's checkpoints")


def test_without_a_key_a_full_checkpoint_copied_from_another_run_is_refused(
        chain_runtime: Any, url: str, db_query: Any) -> None:
    assert_copies_refused(url, db_query, "every checkpoint", "belongs to run 'other', not 'victim'")


def assert_copies_refused(url: str, db_query: Any, copied: str, why: str) -> None:
    seen: list[Any] = []
    fail = {"on": True}
    wf = workflow(url, seen, fail)
    assert wf.run_sync("victim's input", run_id="victim").status.value == "failed"
    assert wf.run_sync("other input", run_id="other").status.value == "failed"
    copy_rows(db_query, url, where="seq > 0" if copied == "deltas" else "seq >= 0")
    fail["on"] = False
    seen.clear()
    with pytest.raises(StateError) as refused:
        wf.resume_from("victim")
    message = str(refused.value)
    assert "run 'victim'" in message and why in message, message
    assert seen == []  # nothing ran: no output of the other run reached an agent
    assert db_query(url, "SELECT count(*) FROM pyagent_leases WHERE run_id = 'victim'") == [(0,)]


@pytest.mark.parametrize("encrypted", [True, False])
def test_a_run_header_copied_from_another_run_is_listed_as_unreadable(
        chain_runtime: Any, url: str, db_query: Any, encrypted: bool, request: pytest.FixtureRequest) -> None:
    import anyio

    if encrypted:
        request.getfixturevalue("key")
    seen: list[Any] = []
    wf = workflow(url, seen, {"on": False})
    wf.run_sync("a", run_id="victim")
    wf.run_sync("b", run_id="other")
    db_query(url, "UPDATE pyagent_runs SET payload = (SELECT payload FROM pyagent_runs WHERE run_id = 'other') "
                  "WHERE run_id = 'victim'")

    async def history() -> Any:
        return await query_store(url, workflow=None, since=None, status=None)

    records = {r.run_id: r for r in anyio.run(history)}
    assert set(records) == {"victim", "other"}
    assert records["other"].unreadable is None
    assert "belongs to run 'other'" in (records["victim"].unreadable or "")
