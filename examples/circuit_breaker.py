"""Seed §5.3: a circuit breaker stops calling a failing service, then probes it carefully.

Five failed runs open the breaker; runs are then refused at once (no agent call) until
``reset_timeout`` has passed; a trial run that succeeds closes it again.
"""

from __future__ import annotations

import anyio

from pyagent.orchestrator import Task, Workflow

service = {"up": False, "calls": 0}


def call_service(request: str) -> str:
    service["calls"] += 1
    if not service["up"]:
        raise ConnectionError("payment service is down")
    return f"processed {request}"


workflow = Workflow(
    name="Protected Flow",
    steps=[Task(name="Charge", agent=call_service)],
    circuit_breaker={
        "failure_threshold": 5,
        "reset_timeout": 0.3,  # seconds; 60 in the seed
        "half_open_requests": 1,
    },
)


async def main() -> None:
    for i in range(7):
        result = await workflow.run(f"order-{i}")
        print(f"run {i}: {result.status:<9} circuit={workflow.get_state().circuit['state']:<9} "  # type: ignore[index]
              f"agent calls so far={service['calls']}  {result.error}")
    print("...service recovers; waiting for reset_timeout")
    service["up"] = True
    await anyio.sleep(0.35)
    result = await workflow.run("order-7")
    print(f"trial run: {result.status}, circuit={workflow.get_state().circuit['state']}")  # type: ignore[index]
    metrics = workflow.get_metrics()
    print(f"metrics: executions={metrics.total_executions} rejected={metrics.rejected} "
          f"circuit_state={metrics.circuit_state}")


if __name__ == "__main__":
    anyio.run(main)
