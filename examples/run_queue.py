"""Replicas sharing one store: runs queued in the store, taken by whichever replica has a slot.

Three orchestrators serve one store here, as three `pyagent serve` processes would serve one
SQL store (`pyagent serve app.py --storage postgresql://... --concurrency 2` on each machine).
Ten runs are queued through the first one; every replica executes at most two at once, the
workflow's `max_active_runs=3` holds across all three, and one queued run is cancelled through
the store, as `pyagent runs cancel RUN_ID --storage URL` does. See docs/serving.md.

    python examples/run_queue.py
"""

from __future__ import annotations

import contextlib
from collections import Counter

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.plugin import close_store, open_store

STORE = "memory://run-queue-example"  # in one process; replicas share sqlite:// or postgresql://
active = peak = 0
ran_on: Counter[str] = Counter()


def replica_workflow(replica: str) -> Workflow:
    async def resize(image: str) -> str:
        global active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.05)
        active -= 1
        ran_on[replica] += 1
        return f"{image} resized on {replica}"

    return Workflow(name="thumbnails", steps=[Task(name="resize", agent=resize)], max_active_runs=3)


async def main() -> None:
    async with contextlib.AsyncExitStack() as stack:
        hosts = []
        for name in ("web-1", "web-2", "web-3"):
            orchestrator = Orchestrator(store=STORE)
            orchestrator.add_workflow(replica_workflow(name))
            hosts.append(await stack.enter_async_context(
                orchestrator.serving(port=None, max_running=2, poll_interval=0.05)))
        workflow = hosts[0].orchestrator.workflows["thumbnails"]
        submitted = [await hosts[0].submit(workflow, f"photo-{i}.jpg", trigger="example", source="upload")
                     for i in range(10)]

        store = await open_store(STORE)
        outcome = await store.request_cancel(submitted[-1].run_id, reason="upload deleted", now=hosts[0].clock.time())
        print(f"cancel of the last queued run: {outcome}")

        with anyio.fail_after(30):
            while True:
                statuses = Counter(h.status for h in await store.list_runs(workflow="thumbnails"))
                if statuses["completed"] + statuses["cancelled"] == 10:
                    break
                await anyio.sleep(0.02)
        await close_store(store)
    print(f"runs: {dict(statuses)}")
    print(f"executed per replica: {dict(sorted(ran_on.items()))}")
    print(f"most runs active at once: {peak} (max_active_runs=3)")
    assert statuses == {"completed": 9, "cancelled": 1} and sum(ran_on.values()) == 9 and peak <= 3


if __name__ == "__main__":
    anyio.run(main)
