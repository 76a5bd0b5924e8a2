"""What a guardrail costs: a 1,000-task chain with and without guardrails, per task.

The unguarded chain is the hot path every task without guardrails takes; the others add a
task output guardrail (``max_length``), an agent's own guardrail (``max_length``), and PII
redaction of a short answer that holds one e-mail address, on the task.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import anyio

from pyagent import agent
from pyagent.guardrails import max_length, redact_pii
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

N = 1000
REPEATS = 20
TEXT = "Thanks, we will write to ann@example.com about it."


def answer(x: Any) -> str:
    return TEXT


def chain(**task_options: Any) -> Workflow:
    fn = task_options.pop("agent", answer)
    return Workflow(name="chain", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i}", agent=fn, **task_options) for i in range(N)])


async def measure() -> dict[str, float]:
    variants = {
        "no guardrails": chain(),
        "task max_length": chain(output_guardrails=[max_length(1000)]),
        "agent max_length": chain(agent=agent(answer, guardrails=[max_length(1000)])),
        "task redact_pii": chain(output_guardrails=[redact_pii()]),
    }
    out = {}
    for label, wf in variants.items():
        await wf.run(None)  # warm up
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            result = await wf.run(None)
            times.append(time.perf_counter() - t)
        assert result.ok, result.error
        out[label] = statistics.median(times) / N * 1e6
    return out


def main() -> None:
    r = anyio.run(measure)
    base = r["no guardrails"]
    parts = [f"{label} {us:.2f} µs/task" + ("" if label == "no guardrails" else f" (+{us - base:.2f})")
             for label, us in r.items()]
    print(f"guardrails, chain of {N} tasks [asyncio]: " + "; ".join(parts))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
