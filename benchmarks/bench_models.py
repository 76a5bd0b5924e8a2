"""1,000 concurrent model-agent tasks against a loopback chat-completions server (each answer
after 50 ms), with max_concurrency=100, against the plain ``openai`` client under an
``asyncio.Semaphore(100)`` in the same run. Goal: pyagent's wall time <= 1.1x the plain client's.

The server runs in its own process (``python -m pyagent_openai.testing``), so it does not share
the interpreter with the client being measured.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

N = 1_000
LIMIT = 100
DELAY = 0.05
ROUNDS = 3


async def plain(url: str) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient())
    limit = asyncio.Semaphore(LIMIT)

    async def one(i: int) -> str:
        async with limit:
            reply = await client.chat.completions.create(model="test-model", messages=[
                {"role": "system", "content": "You answer briefly"}, {"role": "user", "content": f"question {i}"}])
        return reply.choices[0].message.content or ""

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(i) for i in range(N)))
    wall = time.perf_counter() - started
    assert answers == ["ok"] * N
    await client.close()
    return wall


async def pyagent_run(url: str) -> float:
    from pyagent_openai import OpenAIModel

    from pyagent import agent
    from pyagent.orchestrator import ExecutionPattern, Task, Workflow

    model = OpenAIModel("test-model", base_url=url, api_key="sk-bench", max_concurrency=LIMIT)
    wf = Workflow(name="fan", pattern=ExecutionPattern.PARALLEL, reducer=lambda r: len(r),
                  steps=[Task(name=f"q{i}", agent=agent("You answer briefly", name=f"a{i}", model=model))
                         for i in range(N)])
    started = time.perf_counter()
    result = await wf.run("question")
    wall = time.perf_counter() - started
    assert result.ok and result.output == N, result.error
    assert all(r.output == "ok" for r in result.tasks.values())
    await model.aclose()
    return wall


def main() -> None:
    server = subprocess.Popen([sys.executable, "-m", "pyagent_openai.testing", "--delay", str(DELAY)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        asyncio.run(pyagent_run(url))  # warm-up: imports, plugin discovery, connections
        asyncio.run(plain(url))
        ours, theirs = [], []
        for _ in range(ROUNDS):  # interleaved, so both see the same machine load
            theirs.append(asyncio.run(plain(url)))
            ours.append(asyncio.run(pyagent_run(url)))
        best_ours, best_theirs = min(ours), min(theirs)
        print(f"{N} model-agent tasks, answers after {DELAY * 1000:.0f} ms, max_concurrency={LIMIT} "
              f"(floor: {N / LIMIT * DELAY:.2f} s)")
        print(f"  plain openai client + Semaphore({LIMIT}): {best_theirs:.3f} s (best of {ROUNDS}: "
              f"{', '.join(f'{t:.3f}' for t in theirs)})")
        print(f"  pyagent workflow, {N} instruction agents: {best_ours:.3f} s (best of {ROUNDS}: "
              f"{', '.join(f'{t:.3f}' for t in ours)})")
        ratio = best_ours / best_theirs
        print(f"  ratio {ratio:.2f}x (goal <= 1.10x): {'met' if ratio <= 1.10 else 'NOT met'}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
