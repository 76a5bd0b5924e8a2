"""A file for ``pyagent serve``: a webhook, an event subscription and a cron schedule.

    pyagent serve examples/serve_app.py --storage sqlite://runs.db
    curl -X POST localhost:8000/orders -H 'Content-Type: application/json' -d '{"order": 1, "total": 250}'

Run directly (``python examples/serve_app.py``) it serves itself for a moment on a free port:
one order comes in over HTTP, its run emits an event that starts a second workflow, a cron
tick fires, each run says how it started, then it shuts down gracefully as SIGTERM would make
it. With pyagent-dashboard installed, the dashboard is at /ui on the same port (it reads its
runs page). Needs pyagent-webhooks, pyagent-cron and pyagent-sql.
"""

from __future__ import annotations

from typing import Any

from pyagent.orchestrator import Orchestrator, Task, Workflow


def check(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "approved": order["total"] < 1000}


def announce(order: dict[str, Any]) -> str:
    if order["approved"]:
        orchestrator.emit_sync("order_approved", order)  # plain code on the serving loop: ids at once
    return "approved" if order["approved"] else "held for review"


orders = Workflow(name="orders", steps=[Task(name="Check", agent=check), Task(name="Announce", agent=announce)])
fulfil = Workflow(name="fulfil", steps=[Task(name="Ship", agent=lambda e: f"shipped order {e.order}")])
nightly = Workflow(name="nightly", steps=[Task(name="Report", agent=lambda x: "nightly report")])

orchestrator = Orchestrator()
orchestrator.on_webhook("/orders", workflow=orders)
orchestrator.on_event("order_approved", workflow=fulfil, filter=lambda e: e.total > 100)
orchestrator.schedule(nightly, cron="0 2 * * *", timezone="Europe/Berlin")
heartbeat = orchestrator.schedule(Workflow(name="heartbeat", steps=[Task(name="Beat", agent=lambda x: "ok")]),
                                  cron="* * * * * *")


if __name__ == "__main__":
    import json
    import logging
    import re
    import urllib.request

    import anyio

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    def get(url: str) -> str:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=10) as r:
            return str(r.read().decode())

    def post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    async def main() -> None:
        async with orchestrator.serving(port=0, store="sqlite://serve_app_runs.db", grace=5) as host:
            accepted = await anyio.to_thread.run_sync(post, host.urls[0] + "/orders", {"order": 1, "total": 250})
            print(f"order accepted: run {accepted['run_id'][:8]}...")
            with anyio.fail_after(10):
                while not (orchestrator.get_history(workflow="fulfil") and heartbeat.last_fired):
                    await anyio.sleep(0.05)
            print(f"event started: {fulfil.get_state().results['Ship']}")
            print(f"cron fired: heartbeat at {heartbeat.last_fired:%H:%M:%S %Z}")
            newest = {}
            for run in await orchestrator.aget_history(limit=20):
                newest.setdefault(run.workflow, run)
            for name, run in sorted(newest.items()):
                print(f"  {name}: started by {run.trigger['kind']} ({run.trigger.get('source')})")
            if any(web.path == "/ui" for web in host.web_apps):
                html = await anyio.to_thread.run_sync(get, host.urls[0] + "/ui/runs")
                kinds = sorted(set(re.findall(r'data-trigger="([a-z]+)"', html)))
                print(f"dashboard at {host.urls[0]}/ui/ shows runs started by: {', '.join(kinds)}")
        print("stopped gracefully")

    anyio.run(main, backend="asyncio")
