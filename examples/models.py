"""Language-model agents offline: tools, structured output, streaming and usage.

A billing agent looks invoices up with a tool and a reader agent turns text into a validated
Invoice, both answered by ScriptedModel (what a model would answer, scripted), inside one
workflow. The streamed text, every tool call and the tokens used are printed from the events,
the task records, the metrics and the history. Swap the ScriptedModels for
model="openai:gpt-4o-mini" (or set PYAGENT_MODEL) and nothing else changes.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from pyagent import agent, hookimpl
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.plugins import get_runtime
from pyagent.testing import Reply, ScriptedModel, tool_call

INVOICES = {42: {"number": 42, "total": 99.5, "paid": False}}


def get_invoice(invoice_id: int) -> dict[str, Any]:
    """Fetch one invoice.

    Args:
        invoice_id: The number printed on the invoice.
    """
    return INVOICES[invoice_id]


class Invoice(BaseModel):
    number: int
    total: float
    paid: bool


billing = agent(
    "You handle billing, invoices and payments", name="billing", tools=[get_invoice], stream=True,
    model=ScriptedModel([Reply(tool_calls=[tool_call("get_invoice", invoice_id=42)], usage=(180, 12)),
                         Reply("Invoice 42 (99.50 EUR) is not paid yet.", usage=(230, 11))]),
)
reader = agent(
    "You turn the billing agent's answer into an invoice record", name="reader", output_type=Invoice,
    model=ScriptedModel([Reply('{"number": 42, "total": 99.5, "paid": false}', usage=(90, 14))]),
)


class Show:
    """A monitor plugin printing what model agents do as it happens."""

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        if event.kind == "agent.delta":
            print(event.data["delta"], end="", flush=True)
        elif event.kind == "tool.started":
            print(f"  [{event.data['agent']} calls {event.data['tool']}({event.data['arguments']})]")
        elif event.kind == "tool.called":
            print(f"  [{event.data['tool']} returned {event.data['result']}]")
        elif event.kind == "model.usage":
            print(f"\n  [{event.data['agent']}: {event.data['input_tokens']} in, {event.data['output_tokens']} out]")


async def main() -> None:
    get_runtime().register(Show(), "show")
    wf = Workflow(name="Invoice check", steps=[Task(name="Answer", agent=billing),
                                               Task(name="Record", agent=reader)])
    result = await wf.run("Is invoice 42 paid?")
    record = result.output
    print(f"\nstructured output: {record!r} (type {type(record).__name__})")
    for name, task in result.tasks.items():
        calls = [c["tool"] for c in task.tool_calls or []]
        print(f"task {name}: {task.usage.input_tokens} + {task.usage.output_tokens} tokens in "
              f"{task.usage.requests} model calls, tool calls {calls}")
    metrics = wf.get_metrics()
    print(f"metrics: {metrics.input_tokens} input and {metrics.output_tokens} output tokens, "
          f"{metrics.model_requests} model calls")
    (execution,) = Orchestrator().get_history(workflow="Invoice check")
    call = execution.tasks[0].tool_calls[0]
    print(f"history: {call.tool}({call.arguments}) -> {call.status}: {call.result}")


if __name__ == "__main__":
    anyio.run(main)
