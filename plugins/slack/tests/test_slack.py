"""SlackMonitor against a loopback HTTP server, through the real slack-sdk."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import anyio
import pytest
from pyagent_slack import SlackMonitor

from pyagent import ConfigurationError
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.plugins import Runtime


def boom(x: Any) -> Any:
    raise RuntimeError("database unreachable")


def failing(name: str = "Nightly") -> Workflow:
    return Workflow(name=name, steps=[Task(name="Load", agent=lambda x: x), Task(name="Store", agent=boom)])


def run(orch: Orchestrator, name: str, times: int = 1) -> list[Any]:
    async def go() -> list[Any]:
        return [await orch.run_workflow(name) for _ in range(times)]

    return anyio.run(go)


def text_of(request: dict[str, Any]) -> str:
    return json.dumps(request["body"])


def test_the_kind_is_registered_and_importable_by_class_name(chain_runtime: Runtime) -> None:
    from pyagent.monitors import SlackMonitor as ByName
    from pyagent.monitors import create

    assert ByName is SlackMonitor
    monitor = create({"name": "slack", "webhook_url": "http://127.0.0.1:9/hooks/x", "on": ["task.failed"]})
    assert isinstance(monitor, SlackMonitor) and monitor.notifications == {"task.failed"}
    with pytest.raises(ConfigurationError, match="has no option 'chanel': did you mean 'channel'"):
        create("slack", token="xoxb-1", chanel="#ops")


def test_a_failed_run_is_one_block_kit_message_through_the_webhook(chain_runtime: Runtime, slack: Any) -> None:
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/T000/B000/secret", group_wait=0,
                           link="https://ops.example/runs/{run_id}")
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(failing())
    (result,) = run(orch, "Nightly")
    assert result.status.value == "failed"  # the monitor never changes the outcome
    (request,) = slack.wait_for(1)
    monitor.close()
    assert request["path"] == "/hooks/T000/B000/secret"
    body = request["body"]
    assert body["blocks"][0]["type"] == "header" and "Nightly" in body["blocks"][0]["text"]["text"]
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    for expected in ("*Workflow*\nNightly", result.run_id, "*Failing task*\nStore", "database unreachable",
                     "*Duration*", "*Attempts*\n1"):
        assert expected in fields
    assert f"https://ops.example/runs/{result.run_id}" in text_of(request)
    assert "database unreachable" in body["text"]
    assert monitor.sent == 1 and monitor.failed == 0


def test_web_api_chat_post_message_and_the_token_is_never_logged(chain_runtime: Runtime, slack: Any,
                                                                   caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    token = "xoxb-1111-secret-token"
    monitor = SlackMonitor(token=token, channel="#ops", base_url=f"{slack.url}/api/", group_wait=0)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(failing())
    run(orch, "Nightly")
    (request,) = slack.wait_for(1)
    monitor.close()
    assert request["path"] == "/api/chat.postMessage"
    assert request["headers"]["Authorization"] == f"Bearer {token}"
    assert request["body"]["channel"] == "#ops" and request["body"]["blocks"]
    assert token not in repr(monitor)
    assert caplog.records and not any(token in r.getMessage() for r in caplog.records)
    # A failed delivery is logged without the token either.
    slack.answers = [(500, {}, '{"ok": false}')] * 2
    quiet = SlackMonitor(token=token, channel="#ops", base_url=f"{slack.url}/api/", group_wait=0,
                         max_retries=1, backoff=0)
    quiet.on_event(_event("workflow.failed", "W"))
    quiet.close()
    assert quiet.failed == 1
    assert not any(token in r.getMessage() for r in caplog.records)


def _event(kind: str, workflow: str, **data: Any) -> Any:
    from pyagent import Event

    return Event(kind, workflow=workflow, run_id=f"run-{workflow}-{time.monotonic_ns()}", status="failed",
                 data={"error": "RuntimeError: x", "duration": 0.5, **data})


def test_the_webhook_url_is_never_logged_even_by_slack_sdk(slack: Any, caplog: Any) -> None:
    """The webhook URL is the secret: slack-sdk logs it at DEBUG, and at INFO when it retries."""
    caplog.set_level(logging.DEBUG)
    secret = "T000/B000/XXXXsecretXXXX"
    slack.answers = [(429, {"Retry-After": "0"}, "rate_limited"), (500, {}, "oops")]
    monitor = SlackMonitor(webhook_url=f"{slack.url}/services/{secret}", group_wait=0, backoff=0)
    monitor.on_event(_event("workflow.failed", "W"))
    assert len(slack.wait_for(3)) == 3
    monitor.close()
    assert monitor.sent == 1
    assert any("slack_sdk" in r.name for r in caplog.records)  # slack-sdk's own lines are kept...
    assert not any(secret in r.getMessage() for r in caplog.records)  # ...without the secret


def test_what_runs_say_is_escaped_and_bounded_for_slack(slack: Any) -> None:
    """Error text is the agents': Slack must not read <!channel> in it as a mention, and no field
    may pass Block Kit's limits (Slack refuses the whole message then)."""
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, on=["workflow.failed", "handoff"])
    monitor.on_event(_event("workflow.failed", "Night <!here>", error="RuntimeError: <!channel> & <http://x|y>"))
    monitor.on_event(_event("handoff", "W", from_agent="a", to_agent="b", reason="r" * 5000))
    requests = slack.wait_for(2)
    monitor.close()
    failed = next(r["body"] for r in requests if "failed" in r["body"]["text"])
    # Everything Slack reads as mrkdwn (the header is plain text, where Slack reads nothing).
    mrkdwn = " ".join([failed["text"], *(f["text"] for b in failed["blocks"] for f in b.get("fields", []))])
    for raw in ("<!channel>", "<!here>", "<http://x|y>"):
        assert raw not in mrkdwn
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in failed["text"]
    handoff = next(r["body"] for r in requests if r is not None and "handoff" in r["body"]["text"])
    for block in handoff["blocks"]:
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
    assert len(handoff["text"]) <= 3000


def test_429_retry_after_is_honoured(slack: Any) -> None:
    slack.answers = [(429, {"Retry-After": "1"}, "rate_limited")]
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0)
    started = time.monotonic()
    monitor.on_event(_event("workflow.failed", "W"))
    requests = slack.wait_for(2)
    waited = time.monotonic() - started
    monitor.close()
    assert len(requests) == 2 and waited >= 1.0
    assert monitor.sent == 1 and monitor.failed == 0


def test_5xx_answers_are_retried_with_backoff_then_given_up(slack: Any) -> None:
    slack.answers = [(500, {}, "oops"), (502, {}, "bad gateway")]
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, backoff=0.05)
    monitor.on_event(_event("workflow.failed", "W"))
    assert len(slack.wait_for(3)) == 3
    monitor.flush(5)
    assert monitor.sent == 1
    slack.answers = [(503, {}, "down")] * 10
    stubborn = SlackMonitor(webhook_url=f"{slack.url}/hooks/b", group_wait=0, backoff=0.01, max_retries=2)
    stubborn.on_event(_event("workflow.failed", "W"))
    stubborn.close()
    assert stubborn.failed == 1 and stubborn.sent == 0
    assert len(slack.requests) == 3 + 3  # one try and two retries
    monitor.close()


def test_a_burst_of_200_failures_is_one_message_with_a_count(chain_runtime: Runtime, slack: Any) -> None:
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=1.0, coalesce_window=60)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(failing())
    results = run(orch, "Nightly", 200)
    assert all(r.status.value == "failed" for r in results)
    (request,) = slack.wait_for(1)
    assert "200 runs of workflow 'Nightly' failed" in text_of(request)
    assert results[-1].run_id in text_of(request)  # the latest occurrence in full
    assert monitor.coalesced == 199
    # More failures within the window wait for it, then go out together: none now.
    run(orch, "Nightly", 3)
    time.sleep(1.5)
    assert len(slack.requests) == 1
    monitor.flush(5)  # at shutdown the window is cut short: one more message with the 3
    assert len(slack.requests) == 2 and "3 runs of workflow 'Nightly' failed" in text_of(slack.requests[1])
    monitor.close()


def test_a_full_queue_drops_the_oldest_and_counts_them(slack: Any) -> None:
    slack.hold = threading.Event()
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, queue_size=3, flush_timeout=10)
    monitor.on_event(_event("workflow.failed", "first"))  # taken by the sender, held by the server
    deadline = time.monotonic() + 10
    while not monitor._busy and time.monotonic() < deadline:
        time.sleep(0.01)
    for name in ("a", "b", "c", "d", "e"):
        monitor.on_event(_event("workflow.failed", name))
    assert monitor.dropped == 2
    slack.hold.set()
    monitor.close()
    delivered = [json.loads(json.dumps(r["body"]))["blocks"][1]["fields"][0]["text"] for r in slack.requests]
    assert delivered == ["*Workflow*\nfirst", "*Workflow*\nc", "*Workflow*\nd", "*Workflow*\ne"]


def test_pending_notifications_are_flushed_on_close(slack: Any) -> None:
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=30)
    monitor.on_event(_event("workflow.failed", "W"))
    time.sleep(0.2)
    assert slack.requests == []  # still grouping
    started = time.monotonic()
    monitor.close()
    assert len(slack.requests) == 1 and time.monotonic() - started < 5
    monitor.on_event(_event("workflow.failed", "W"))  # after close: dropped and counted, no thread
    assert monitor.dropped == 1


def test_a_hanging_slack_never_slows_or_fails_runs(chain_runtime: Runtime, slack: Any) -> None:
    slack.hold = threading.Event()  # every request hangs until the test ends
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, queue_size=5,
                           timeout=30, flush_timeout=0.5)
    orch = Orchestrator(monitors=[monitor])
    for i in range(20):
        orch.add_workflow(failing(f"W{i}"))
    started = time.monotonic()

    async def go() -> list[Any]:
        return [await orch.run_workflow(f"W{i}") for i in range(20)]

    results = anyio.run(go)
    took = time.monotonic() - started
    assert all(r.status.value == "failed" and r.error for r in results)
    assert took < 2.0, f"20 runs took {took:.2f}s while Slack hung"
    assert monitor.dropped >= 20 - 5 - 1
    started = time.monotonic()
    monitor.close()  # bounded by flush_timeout even though Slack never answers
    assert time.monotonic() - started < 2.0


def test_circuit_opened_and_a_paused_run_that_ends(chain_runtime: Runtime, slack: Any) -> None:
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, coalesce_window=0)
    orch = Orchestrator(monitors=[monitor])
    wf = Workflow(name="Guarded", steps=[Task(name="call", agent=boom)],
                  circuit_breaker={"failure_threshold": 2, "reset_timeout": 60})
    orch.add_workflow(wf)
    run(orch, "Guarded", 2)

    def pauses(x: Any, ctx: Any) -> str:
        ctx.run.emit("workflow.waiting", status="waiting", question="approve?")
        return "approved"

    orch.add_workflow(Workflow(name="Refund", steps=[Task(name="approve", agent=pauses)]))
    (ok,) = run(orch, "Refund")
    monitor.flush(5)
    monitor.close()
    texts = [r["body"]["text"] for r in slack.requests]
    assert any("Circuit breaker of workflow 'Guarded' opened" in t for t in texts)
    assert any(f"Paused run of workflow 'Refund' completed: run {ok.run_id}" in t for t in texts)
    assert sum("runs of workflow 'Guarded' failed" in t or "Workflow 'Guarded' failed" in t for t in texts) >= 1


def test_nothing_to_send_builds_no_event_per_task(chain_runtime: Runtime) -> None:
    monitor = SlackMonitor(webhook_url="http://127.0.0.1:9/hooks/never")
    assert "task.started" not in monitor.event_kinds and "task.completed" not in monitor.event_kinds
    seen: list[str] = []

    class Spy:
        event_kinds = monitor.event_kinds

        def on_event(self, event: Any) -> None:
            seen.append(event.kind)

    orch = Orchestrator(monitors=[monitor, Spy()])
    orch.add_workflow(Workflow(name="ok", steps=[Task(name=f"t{i}", agent=lambda x: x) for i in range(50)]))
    run(orch, "ok")
    assert seen == ["workflow.completed"] and monitor._thread is None
    monitor.close()


def test_configuration_errors_are_clear(monkeypatch: Any, caplog: Any) -> None:
    for var in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError, match="needs where to send"):
        SlackMonitor()
    with pytest.raises(ConfigurationError, match="needs channel="):
        SlackMonitor(token="xoxb-1")
    with pytest.raises(ConfigurationError, match=r"did you mean 'workflow\.failed'"):
        SlackMonitor(webhook_url="https://hooks.example/x", on=["workflow.faild"])
    with pytest.raises(ConfigurationError, match="base_url must end with '/'"):
        SlackMonitor(token="xoxb-1", channel="#a", base_url="http://127.0.0.1:1/api")
    with pytest.raises(ConfigurationError, match="link"):
        SlackMonitor(webhook_url="https://hooks.example/x", link="https://x/{runid}")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("SLACK_CHANNEL", "#alerts")
    assert SlackMonitor().channel == "#alerts"
    placeholder = SlackMonitor(webhook_url="...")  # as the specification writes it
    assert not placeholder.enabled and placeholder.event_kinds == frozenset()
    assert "not an http(s) URL" in caplog.text



def test_a_run_that_really_waits_for_a_person_is_announced_when_it_ends(chain_runtime: Runtime, slack: Any) -> None:
    monitor = SlackMonitor(webhook_url=f"{slack.url}/hooks/a", group_wait=0, coalesce_window=0)
    orch = Orchestrator(monitors=[monitor])

    async def approve(x: Any, ctx: Any) -> str:
        answer = await ctx.interrupt("Approve the refund?", schema=bool)
        return "refunded" if answer else "refused"

    orch.add_workflow(Workflow(name="Refund", steps=[Task(name="approve", agent=approve)]))

    async def go() -> Any:
        box: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            async def start() -> None:
                box["result"] = await orch.run_workflow("Refund")

            tg.start_soon(start)
            with anyio.fail_after(10):
                while not (pending := await orch.apending()):
                    await anyio.sleep(0.01)
            await orch.resume(pending[0].run_id, {pending[0].id: True}, answered_by="alice")
        return box["result"]

    result = anyio.run(go)
    monitor.flush(5)
    monitor.close()
    texts = [r["body"]["text"] for r in slack.requests]
    assert result.ok and any(f"Paused run of workflow 'Refund' completed: run {result.run_id}" in t for t in texts)
