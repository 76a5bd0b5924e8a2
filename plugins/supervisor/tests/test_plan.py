"""Reading plans: lists from code, JSON or lines from a model, and clear errors for anything else."""

from __future__ import annotations

from typing import Any

import pytest
from pyagent_supervisor import PlanError, parse_plan


def plan(value: Any) -> list[str]:
    return parse_plan(value, supervisor="manager", phase="plan")


@pytest.mark.parametrize(("value", "expected"), [
    (["research", " analyse ", ""], ["research", "analyse"]),
    (("a", "b"), ["a", "b"]),
    ({"subtasks": ["a", "b"]}, ["a", "b"]),
    ([{"task": "a"}, {"subtask": "b"}], ["a", "b"]),
    ('["research X", "analyse Y"]', ["research X", "analyse Y"]),
    ('```json\n["research X", "analyse Y"]\n```', ["research X", "analyse Y"]),
    ('Here is my plan: ["research X", "analyse Y"]. Good luck!', ["research X", "analyse Y"]),
    ('{"subtasks": ["a", "b"]}', ["a", "b"]),
    ("Here are the subtasks:\n1. Research X\n2) Analyse Y\n3. Write Z", ["Research X", "Analyse Y", "Write Z"]),
    ("- research X\n* analyse Y\n• write Z", ["research X", "analyse Y", "write Z"]),
    ("Step 1: gather data\nStep 2: chart it", ["gather data", "chart it"]),
    ("research X\nanalyse Y", ["research X", "analyse Y"]),
    ("one single subtask", ["one single subtask"]),
    (None, []),
    ([], []),
    ("[]", []),
    ("DONE", []),
    ("No more subtasks.", []),
])
def test_reads_plans(value: Any, expected: list[str]) -> None:
    assert plan(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    # Models format plans in markdown: a bold heading is not a subtask, and the bold markers
    # around a subtask's label are not part of it.
    ("**Subtasks:**\n1. **Research**: gather sources on AI\n2. **Analysis**: crunch numbers",
     ["Research: gather sources on AI", "Analysis: crunch numbers"]),
    ("### Plan\n- **Research** AI trends\n- *Analyse* the numbers",
     ["Research AI trends", "Analyse the numbers"]),
    ("*research X*\n*analyse Y*", ["research X", "analyse Y"]),
    # Indented sub-bullets detail a subtask; they are not subtasks of their own.
    ("1. Research the market\n   - competitors\n   - pricing\n2. Analyse the data:\n    * churn",
     ["Research the market: competitors; pricing", "Analyse the data: churn"]),
])
def test_reads_markdown_plans(value: str, expected: list[str]) -> None:
    assert plan(value) == expected


@pytest.mark.parametrize("value", [
    "No more subtasks needed.",
    "No further subtasks are needed.",
    "No further work is required.",
    "Nothing more to do.",
    "None needed.",
    "All done!",
    "The work is complete.",
    "No additional subtasks.",
    "```json\n[]\n```",
])
def test_a_review_that_wants_no_more_work_is_an_empty_plan(value: str) -> None:
    assert parse_plan(value, supervisor="manager", phase="review") == []


@pytest.mark.parametrize("value", [42, {"answer": 1}, [1, 2], [["nested"]], object()])
def test_rejects_what_is_not_a_list_of_subtasks(value: Any) -> None:
    with pytest.raises(PlanError) as info:
        plan(value)
    message = str(info.value)
    assert "supervisor 'manager'" in message and "plan phase" in message and "list of strings" in message
