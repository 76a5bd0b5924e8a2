"""Seed §7.2 (webhooks): a webhook on a real HTTP server, its status API, HMAC and idempotency.

Serves on 127.0.0.1 (a free port), POSTs to the seed's ``/api/trigger``, reads the run's
status, shows a signed webhook accepting a good signature and refusing a bad one, and an
idempotency key mapping two requests to one run. Runs are recorded in SQLite before each 202.
Needs pyagent-webhooks and pyagent-sql.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow

ci_workflow = Workflow(name="ci", steps=[
    Task(name="Checkout", agent=lambda body: body["ref"]),
    Task(name="Test", agent=lambda ref: f"tests passed on {ref}"),
])

orchestrator = Orchestrator(store="sqlite://webhook_runs.db")

orchestrator.on_webhook(
    "/api/trigger",
    workflow=ci_workflow
)
orchestrator.on_webhook("/github", workflow=ci_workflow, secret="s3cret")  # X-Signature-256: sha256=<hex>


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def main() -> None:
    async with orchestrator.serving(port=0) as host:
        base = host.urls[0]
        print(f"listening on {base}")

        def post(path: str, payload: dict[str, Any], **headers: str) -> tuple[int, Any]:
            return http("POST", base + path, json.dumps(payload).encode(),
                        {"Content-Type": "application/json", **headers})

        code, accepted = await anyio.to_thread.run_sync(post, "/api/trigger", {"ref": "main"})
        print(f"POST /api/trigger -> {code} {accepted}")
        with anyio.fail_after(10):
            while (status := (await anyio.to_thread.run_sync(http, "GET", base + accepted["status_url"]))[1])[
                    "status"] != "completed":
                await anyio.sleep(0.02)
        print(f"GET {accepted['status_url']} -> {status['status']}, {status['tasks_completed']}/"
              f"{status['tasks_total']} tasks, output {status['output']!r}")

        body = json.dumps({"ref": "feature"}).encode()
        good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        for signature in (good, "sha256=" + "0" * 64):
            code, answer = await anyio.to_thread.run_sync(
                lambda sig=signature: http("POST", base + "/github", body,
                                           {"Content-Type": "application/json", "X-Signature-256": sig}))
            print(f"signed POST /github -> {code} {answer.get('error', 'accepted')}")

        first = await anyio.to_thread.run_sync(lambda: post("/api/trigger", {"ref": "v1"}, **{"Idempotency-Key": "rel-1"}))
        again = await anyio.to_thread.run_sync(lambda: post("/api/trigger", {"ref": "v1"}, **{"Idempotency-Key": "rel-1"}))
        print(f"same Idempotency-Key twice -> same run: {first[1]['run_id'] == again[1]['run_id']}")
        code, error = await anyio.to_thread.run_sync(
            lambda: http("POST", base + "/api/trigger", b"{oops", {"Content-Type": "application/json"}))
        print(f"bad JSON -> {code}: {error['error']}")


anyio.run(main, backend="asyncio")
