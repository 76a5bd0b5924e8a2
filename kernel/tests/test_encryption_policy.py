"""With a key set, unencrypted state is refused: no downgrade by someone who can write but has no key.

And unencrypted checkpoint rows carry a checksum, so an edited row is detected like an edited
state file, instead of being silently reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pyagent import StateError, Task, Workflow
from pyagent._defaults.memory_store import MemoryStore
from pyagent.durability import codec
from pyagent.durability.state import WorkflowState
from pyagent.durability.store import Checkpoint
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents

pytestmark = pytest.mark.anyio
cryptography = pytest.importorskip("cryptography")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    from cryptography.fernet import Fernet

    k = Fernet.generate_key().decode()
    monkeypatch.setenv("PYAGENT_STATE_KEY", k)
    return k


def chain(agents: Agents, url: str, n: int = 4) -> Workflow:
    seen: list[Any] = []

    def record(name: str) -> Any:
        inner = agents[name]

        def fn(x: Any) -> Any:
            seen.append((name, x))
            return inner(x)

        fn.__name__ = name
        return fn

    wf = Workflow(name="secret", steps=[Task(name=f"t{i}", agent=record(f"t{i}")) for i in range(n)],
                  checkpointing={"storage": url})
    wf._runtime_data["seen"] = seen
    return wf


def forged_delta(run_id: str, seq: int, output: str, *, legacy: bool) -> Checkpoint:
    """A checkpoint row as someone with write access but no key would insert it."""
    body = json.dumps({"v": 1, "kind": "delta", "tasks": [
        {"name": "t2", "status": "completed", "agent": "t2", "output": output,
         "started_at": 1.0, "finished_at": 2.0}]}).encode()
    payload = b"J" + body if legacy else b"S" + hashlib.sha256(body).digest() + body
    return Checkpoint(run_id, seq, "delta", payload)


@pytest.mark.parametrize("legacy", [False, True], ids=["checksummed", "legacy-plain"])
async def test_a_forged_plain_checkpoint_is_refused_when_a_key_is_set(
        drt: Runtime, store_url: str, key: str, legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    agents = Agents()
    agents.failing.add("t2")
    wf = chain(agents, store_url)
    first = await wf.run("in")
    assert first.status is TaskStatus.FAILED
    cps = MemoryStore(store_url)._checkpoints[first.run_id]
    seq = cps[-1].seq + 1
    cps.append(forged_delta(first.run_id, seq, "FORGED", legacy=legacy))
    agents.failing.clear()
    calls = dict(agents.calls)
    with pytest.raises(StateError) as refused:
        await wf.resume_from(first.run_id)
    message = str(refused.value)
    assert f"checkpoint {seq}" in message and first.run_id in message
    assert "is not encrypted, but PYAGENT_STATE_KEY is set" in message and "allow_plaintext=True" in message
    assert agents.calls == calls  # nothing ran
    assert await MemoryStore(store_url).get_lease(first.run_id) is None  # and the claim was given back

    # Opting in (a migration of data saved before the key was set) reads it.
    result = await wf.resume_from(first.run_id, allow_plaintext=True)
    assert result.ok and result.tasks["t2"].reused and result.outputs["t2"] == "FORGED"
    assert ("t3", "FORGED") in wf._runtime_data["seen"]


async def test_the_environment_can_allow_plaintext_for_a_migration(
        drt: Runtime, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    agents = Agents()
    agents.failing.add("t2")
    wf = chain(agents, store_url)
    first = await wf.run("in")  # no key yet: plain, checksummed
    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    agents.failing.clear()
    with pytest.raises(StateError, match="not encrypted"):
        await wf.resume_from(first.run_id)
    monkeypatch.setenv("PYAGENT_STATE_ALLOW_PLAINTEXT", "1")
    assert (await wf.resume_from(first.run_id)).ok
    # The resume wrote an encrypted full checkpoint: the run no longer needs the opt-in.
    monkeypatch.delenv("PYAGENT_STATE_ALLOW_PLAINTEXT")
    again = await wf.resume_from(first.run_id)
    assert again.ok and all(t.reused for t in again.tasks.values())


def test_an_unencrypted_state_file_is_refused_when_a_key_is_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    path = WorkflowState(workflow="w", run_id="r", input="plain").save(tmp_path / "s.json")
    raw = json.loads(path.read_bytes())
    # Its checksum has no key: anyone can edit the state and recompute it.
    body = raw["state"].replace('"plain"', '"forged"')
    raw["state"], raw["sha256"] = body, hashlib.sha256(body.encode()).hexdigest()
    path.write_text(json.dumps(raw))
    assert WorkflowState.load(path).input == "forged"  # without a key: nothing to check against

    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    with pytest.raises(StateError, match=r"state file '.*s\.json' is not encrypted, but PYAGENT_STATE_KEY is set"):
        WorkflowState.load(path)
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: x)])
    with pytest.raises(StateError, match="not encrypted"):
        wf.resume_from(path)
    assert WorkflowState.load(path, allow_plaintext=True).input == "forged"
    monkeypatch.setenv("PYAGENT_STATE_ALLOW_PLAINTEXT", "true")
    assert WorkflowState.load(path).input == "forged"


async def test_an_edited_plain_checkpoint_fails_its_checksum(drt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t2")
    wf = chain(agents, store_url)
    first = await wf.run("in")
    cps = MemoryStore(store_url)._checkpoints[first.run_id]
    original = cps[1].payload
    assert original[:1] == b"S" and b'"output":"in>t0"' in original
    cps[1] = Checkpoint(first.run_id, cps[1].seq, cps[1].kind, original.replace(b"in>t0", b"in>XX"))
    agents.failing.clear()
    calls = dict(agents.calls)
    with pytest.raises(StateError, match=r"checkpoint 1\) failed its checksum"):
        await wf.resume_from(first.run_id)
    assert agents.calls == calls


def test_sealed_payloads_say_how_they_are_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    plain = codec.seal(b'{"a":1}')
    assert plain[:1] == b"S" and codec.unseal(plain, "x") == b'{"a":1}'
    assert codec.unseal(b'J{"a":1}', "x") == b'{"a":1}'  # rows from earlier versions still read
    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    sealed = codec.seal(b'{"a":1}')
    assert sealed[:1] == b"F" and b'"a"' not in sealed and codec.unseal(sealed, "x") == b'{"a":1}'
    for blob in (plain, b'J{"a":1}'):
        with pytest.raises(StateError, match="row 7 is not encrypted"):
            codec.unseal(blob, "row 7")
        assert codec.unseal(blob, "row 7", allow_plaintext=True) == b'{"a":1}'


def test_checkpoint_payloads_decrypt_only_as_the_run_they_were_sealed_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("PYAGENT_STATE_KEY", old)
    sealed = codec.seal(b'{"a":1}', bind="run-1")
    assert sealed[:1] == b"R" and codec.unseal(sealed, "x", bind="run-1") == b'{"a":1}'
    with pytest.raises(StateError, match="copied from another run"):
        codec.unseal(sealed, "checkpoint 3 of run 'run-2'", bind="run-2")
    with pytest.raises(StateError, match="read without saying which"):
        codec.unseal(sealed, "x")
    # Rotation: the new key first, the old one still decrypts what it sealed.
    monkeypatch.setenv("PYAGENT_STATE_KEY", f"{new},{old}")
    assert codec.unseal(sealed, "x", bind="run-1") == b'{"a":1}'
    monkeypatch.setenv("PYAGENT_STATE_KEY", new)
    with pytest.raises(StateError, match="not the key it was saved with"):
        codec.unseal(sealed, "x", bind="run-1")
    monkeypatch.delenv("PYAGENT_STATE_KEY")
    with pytest.raises(StateError, match="is encrypted: set PYAGENT_STATE_KEY"):
        codec.unseal(sealed, "x", bind="run-1")
    assert codec.seal(b"{}", bind="run-1")[:1] == b"S"  # without a key: checksummed as before
