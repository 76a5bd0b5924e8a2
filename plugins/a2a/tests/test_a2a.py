"""Remote A2A agents against `pyagent a2a serve` in another process, over the real protocol."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from a2a_helpers import FLOWS, a2a_server
from pyagent_a2a import A2A_STATUS, RemoteAgentError, remote_agent

from pyagent import ConfigurationError, RunContext, agent, handoff
from pyagent.orchestrator import Task, Workflow

pytestmark = pytest.mark.anyio


def test_the_server_publishes_one_card_per_workflow(served: dict[str, str]) -> None:
    assert set(served) == {"Weather Desk", "Research", "Stuck"}
    weather = remote_agent(served["Weather Desk"])
    assert weather.name == "Weather Desk" and weather.remote_url == served["Weather Desk"]
    assert weather.description.startswith("Weather forecasts: temperatures, rain and wind for a city")
    assert weather.skills == ["Weather Desk"]
    assert served["Weather Desk"].endswith("/weather-desk/")


async def test_a_remote_workflow_answers_with_its_output(served: dict[str, str]) -> None:
    weather = remote_agent(served["Weather Desk"])
    assert await weather.run({"city": "Oslo", "days": 2}, RunContext()) == "Oslo: [11, 12]"
    # Text is read as the input model's JSON too.
    assert await weather.run('{"city": "Bergen"}', RunContext()) == "Bergen: [11]"
    with pytest.raises(RemoteAgentError, match="ended rejected: invalid input for 'Weather Desk'"):
        await weather.run({"days": 2}, RunContext())


async def test_a_streaming_task_is_followed_inside_a_local_workflow(served: dict[str, str],
                                                                    chain_runtime: Any) -> None:
    research = remote_agent(served["Research"])
    events: list[Any] = []
    wf = Workflow(name="local", steps=[Task(name="ask", agent=research),
                                       Task(name="shout", agent=agent(lambda x: x.upper(), name="shout"))])
    result = await wf.run("tides", on_event=events.append)
    assert result.ok, result.error
    assert result.output == "TIDES...."
    statuses = [e for e in events if e.kind == A2A_STATUS]
    assert all(e.task == "ask" and e.data["agent"] == "Research" for e in statuses)
    messages = [e.data["message"] for e in statuses]
    # Each remote task's progress arrived while it ran, in order, then its end.
    for i in range(4):
        assert f"task 'step{i}' completed" in messages
    assert messages.index("task 'step0' completed") < messages.index("task 'step3' completed")
    assert statuses[-1].data["state"] == "completed"


async def test_polling_when_streaming_is_off(served: dict[str, str]) -> None:
    research = remote_agent(served["Research"], streaming=False)
    assert await research.run("waves", RunContext()) == "waves...."


async def test_cancelling_the_run_cancels_the_remote_task(served: dict[str, str]) -> None:
    from a2a.client import ClientConfig, create_client
    from a2a.types import GetTaskRequest, TaskState

    stuck = remote_agent(served["Stuck"])
    seen: list[Any] = []
    started = anyio.Event()

    from pyagent.plugin import hookimpl

    class Watch:
        @hookimpl
        def pyagent_on_event(self, event: Any) -> None:
            if event.kind == A2A_STATUS:
                seen.append(event)
                started.set()

    from pyagent.plugin import get_runtime

    get_runtime().register(Watch(), "watch")
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stuck.run, "x", RunContext())
                await started.wait()
                tg.cancel_scope.cancel()
    finally:
        get_runtime().unregister("watch")
    task_id = seen[0].data["task_id"]
    client = await create_client(stuck.card, client_config=ClientConfig(streaming=False))
    try:
        with anyio.fail_after(15):
            while True:
                task = await client.get_task(GetTaskRequest(id=task_id))
                if task.status.state == TaskState.TASK_STATE_CANCELED:
                    break
                await anyio.sleep(0.1)
    finally:
        await client.close()


async def test_a_handoff_to_a_remote_agent_is_audited_as_remote(served: dict[str, str]) -> None:
    weather = remote_agent(served["Weather Desk"])
    result = await handoff(from_agent="front desk", to_agent=weather, context={"city": "Rome"})
    assert result.ok and result.output == "Rome: [11]"
    assert result.handoff is not None and result.handoff.remote == served["Weather Desk"]


async def test_bearer_tokens_and_api_keys_both_ways(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    env = {"A2A_TOKEN": "right-token", "A2A_KEY": "right-key"}
    with a2a_server(f"{FLOWS}:weather", "--token-env", "A2A_TOKEN", "--api-key-env", "A2A_KEY", env=env) as urls:
        url = urls["Weather Desk"]
        assert url.endswith(":" + url.split(":")[-1]) and not url.endswith("weather-desk/")  # one: at the root
        with pytest.raises(ConfigurationError, match=r"requires credentials .*pass token="):
            remote_agent(url)
        wrong = remote_agent(url, token="wrong-token")
        with pytest.raises(RemoteAgentError, match=r"refused the credentials \(HTTP 401\)"):
            await wrong.run({"city": "Oslo"}, RunContext())
        assert await remote_agent(url, token="right-token").run({"city": "Oslo"}, RunContext()) == "Oslo: [11]"
        assert await remote_agent(url, api_key="right-key").run({"city": "Nice"}, RunContext()) == "Nice: [11]"
        # From configuration: a named remote whose token comes from the environment.
        (tmp_path / "pyagent.toml").write_text(f'[a2a.remotes.weather]\nurl = "{url}"\ntoken_env = "MY_TOKEN"\n')
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MY_TOKEN", "right-token")
        from pyagent import config

        config.reset()
        assert await remote_agent("weather").run({"city": "Lima"}, RunContext()) == "Lima: [11]"
        assert await remote_agent(url).run({"city": "Quito"}, RunContext()) == "Quito: [11]"  # matched by URL


def test_unknown_names_and_urls_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="give the agent's base URL"):
        remote_agent("nowhere")
    with pytest.raises(RemoteAgentError, match=r"no A2A agent answers at http://127\.0\.0\.1:9"):
        remote_agent("http://127.0.0.1:9", card_timeout=5)
