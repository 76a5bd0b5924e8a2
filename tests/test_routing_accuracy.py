"""The embedding router beats the keyword router on the labelled help-desk set (docs/routing.md).

The figures themselves are printed by ``benchmarks/bench_routing.py``; this test keeps the
claim true as either router changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyagent import agent, handoff

DATA = json.loads((Path(__file__).parent / "fixtures" / "helpdesk_routing.json").read_text())


async def accuracy(router: str) -> float:
    agents = [agent(a["description"], name=a["name"]) for a in DATA["agents"]]
    team = handoff.team(agents, router=router)
    right = 0
    for query, label in DATA["queries"]:
        right += (await team.rank(query)).chosen == label
    return right / len(DATA["queries"])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_embedding_router_beats_keyword_router(runtime: Any) -> None:
    assert len(DATA["queries"]) >= 60 and len(DATA["agents"]) == 5
    assert {label for _, label in DATA["queries"]} == {a["name"] for a in DATA["agents"]}
    keyword, embedding = await accuracy("keyword"), await accuracy("embedding")
    assert embedding > keyword
    assert embedding >= 0.8, embedding
