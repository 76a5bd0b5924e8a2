"""Human approval: a refund waits for a person's answer, durably, then goes on.

As a terminal session (everything installed; the store is approvals.db in the working directory):

    # terminal 1: start the run; it stops at the question and waits
    pyagent run examples/human_approval.py --run-id refund-42 --input '{"order": "A-1001", "amount": 120}'

    # terminal 2: see what waits for an answer, then answer it
    pyagent pending --storage sqlite://approvals.db
    pyagent approve refund-42 --answer '{"approved": true, "comment": "loyal customer"}' --by alice \\
        --storage sqlite://approvals.db

    # terminal 1 goes on within a second: COMPLETED ... output: 'refunded $120 for order A-1001'

Kill terminal 1 while it waits (even with kill -9) and nothing is lost: answer in terminal 2 as
above, then `pyagent resume refund-42 examples/human_approval.py --storage sqlite://approvals.db`
finishes it; `pyagent history --storage sqlite://approvals.db` shows the question, who answered,
what and when. Run as `python examples/human_approval.py` it plays both terminals in one process.
"""

from __future__ import annotations

from typing import Any

import anyio

from pyagent import Approval, agent
from pyagent.orchestrator import Orchestrator, Task, Workflow

STORAGE = "sqlite://approvals.db"


@agent(name="assess", description="checks the order and works out the refund")
def assess(order: dict[str, Any]) -> dict[str, Any]:
    return {"order": order["order"], "amount": order["amount"]}


@agent(name="approver", description="asks a person to approve the refund")
async def approve(claim: dict[str, Any], ctx: Any) -> dict[str, Any]:
    # When the answer comes, this task runs again from its start and ctx.interrupt returns
    # the answer: anything before the question runs twice, so it must be safe to repeat
    # (here it only reads its input). Work that must happen once belongs in an earlier task.
    answer = await ctx.interrupt(
        f"Approve a refund of ${claim['amount']} for order {claim['order']}?",
        schema=Approval,
        timeout=24 * 3600,  # nobody answers within a day: the refund is refused, not left hanging
        on_timeout="default",
        default=Approval(approved=False, comment="nobody answered within a day"),
    )
    return {**claim, "approved": answer.approved, "comment": answer.comment}


@agent(name="payments", description="pays the refund once approved")
def refund(decision: dict[str, Any]) -> str:
    if not decision["approved"]:
        return f"refund for order {decision['order']} refused: {decision['comment']}"
    return f"refunded ${decision['amount']} for order {decision['order']}"


refunds = Workflow(
    name="Refund",
    steps=[Task(name="Assess", agent=assess), Task(name="Approve", agent=approve), Task(name="Refund", agent=refund)],
    checkpointing={"enabled": True, "storage": STORAGE},
)


async def main() -> None:
    """Both terminals in one process: the run waits while "a person" answers it."""
    orchestrator = Orchestrator()
    orchestrator.add_workflow(refunds)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await refunds.run({"order": "A-1001", "amount": 120})

        tg.start_soon(run)
        while not (pending := await orchestrator.apending()):  # what `pyagent pending` lists
            await anyio.sleep(0.05)
        (question,) = pending
        print(f"waiting: {question.question} (question {question.id} of run {question.run_id})")
        # What `pyagent approve` does: the answer is checked against the schema and recorded
        # first; the process that holds the run (here, the task above) goes on at once.
        await orchestrator.resume(question.run_id, {question.id: {"approved": True, "comment": "loyal customer"}},
                                  answered_by="alice")
    result = box["result"]
    print(f"{result.status.value}: {result.output}")
    record = next(r for r in await orchestrator.aget_history(refunds) if r.run_id == result.run_id)
    for entry in record.audit:  # the run's history: every question, answer, who and when
        if entry.kind == "interrupt.asked":
            print(f"  asked {entry.data['question']!r}")
        elif entry.kind == "interrupt.answered":
            print(f"  answered {entry.data['answer']} by {entry.data['answered_by']}")


if __name__ == "__main__":
    anyio.run(main)
