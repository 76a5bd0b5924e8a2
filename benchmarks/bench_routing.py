"""Routing: accuracy of the keyword, embedding and llm routers on the labelled help-desk set,
and the embedding router's time per route for 5 agents (model load excluded).

The llm router is measured only when a real model is configured (``PYAGENT_ROUTER_MODEL`` or
``PYAGENT_MODEL``, e.g. ``local:qwen2.5-7b`` with its endpoint in ``[tool.pyagent.models]``);
otherwise it is reported as not measured: a scripted answer is not a model's accuracy.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from pyagent import agent, handoff

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "helpdesk_routing.json"


def load() -> tuple[list[Any], list[tuple[str, str]]]:
    data = json.loads(DATA.read_text())
    agents = [agent(a["description"], name=a["name"]) for a in data["agents"]]
    return agents, [(q, label) for q, label in data["queries"]]


async def accuracy(router: str, agents: list[Any], queries: list[tuple[str, str]]) -> tuple[int, list[str]]:
    team = handoff.team(agents, router=router)
    right, wrong = 0, []
    for query, label in queries:
        scores = await team.rank(query)
        if scores.chosen == label:
            right += 1
        else:
            wrong.append(f"{query!r}: {scores.chosen} (expected {label})")
    return right, wrong


async def main() -> None:
    agents, queries = load()
    print(f"{len(queries)} help-desk queries over {len(agents)} agents ({DATA.name})")
    routers = ["keyword", "embedding"]
    if os.environ.get("PYAGENT_ROUTER_MODEL") or os.environ.get("PYAGENT_MODEL"):
        routers.append("llm")
    for name in routers:
        right, wrong = await accuracy(name, agents, queries)
        print(f"  {name:9s} accuracy {right}/{len(queries)} = {right / len(queries):.1%}")
        for line in wrong:
            print(f"      miss {line}")
    if "llm" not in routers:
        print("  llm       not measured: set PYAGENT_ROUTER_MODEL (or PYAGENT_MODEL) to a real model to measure it")

    from pyagent.plugin import get_runtime

    embedding = get_runtime().lookup("router", "embedding")
    embedding.load()  # excluded from the timing below
    texts = [q for q, _ in queries]
    await embedding.score(texts[0], agents)  # agent descriptions embedded (cached from here on)
    samples = []
    for text in texts:
        started = time.perf_counter()
        await embedding.score(text, agents)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    print(f"  embedding router: {statistics.median(samples):.1f} ms per route (median over {len(samples)}), "
          f"p95 {samples[int(0.95 * len(samples)) - 1]:.1f} ms, 5 agents, model load excluded")


if __name__ == "__main__":
    anyio.run(main)
