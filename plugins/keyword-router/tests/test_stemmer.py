"""The stemmer: Porter's published examples, plus the "ment" addition the router relies on."""

from __future__ import annotations

import pytest
from pyagent_keyword_router import stem

PORTER = {
    "caresses": "caress", "ponies": "poni", "cats": "cat", "feed": "feed", "agreed": "agre",
    "plastered": "plaster", "motoring": "motor", "sing": "sing", "conflated": "conflat",
    "troubled": "troubl", "sized": "size", "hopping": "hop", "tanned": "tan", "falling": "fall",
    "hissing": "hiss", "fizzed": "fizz", "failing": "fail", "filing": "file", "happy": "happi",
    "relational": "relat", "conditional": "condit", "generalizations": "gener",
    "oscillators": "oscil", "triplicate": "triplic", "electrical": "electr", "hopeful": "hope",
    "goodness": "good", "adjustable": "adjust", "effective": "effect", "controlling": "control",
    "rolling": "roll", "probate": "probat", "cease": "ceas", "adoption": "adopt",
}


@pytest.mark.parametrize(("word", "expected"), sorted(PORTER.items()))
def test_porter_examples(word: str, expected: str) -> None:
    assert stem(word) == expected


@pytest.mark.parametrize("family", [
    ["invoice", "invoices", "invoicing", "invoiced"],
    ["bill", "bills", "billing", "billed"],
    ["pay", "payment", "payments", "paying"],
    ["refund", "refunds", "refunded", "refunding"],
    ["install", "installing", "installation", "installed"],
    ["price", "prices", "pricing"],
    # A stem that ends in "y" once a suffix is gone ("deployment" -> "deploy") must meet the
    # bare word, which Porter's step 1c turns into "deploi".
    ["deploy", "deploys", "deployed", "deploying", "deployment", "deployments"],
    ["employ", "employer", "employment"],
])
def test_word_families_share_a_stem(family: list[str]) -> None:
    assert len({stem(w) for w in family}) == 1, {w: stem(w) for w in family}


def test_short_and_non_alphabetic_words_are_left_alone() -> None:
    assert [stem(w) for w in ("is", "a", "gdpr2", "404")] == ["is", "a", "gdpr2", "404"]
