"""The keyword router: which agent's name and description best match the words of a query.

Scoring is BM25's two ideas on a tiny corpus (one "document" per agent): a word that many
agents mention (their shared "support", say) tells them apart less than a word only one
mentions (idf), and a long description is not favoured just for being long (length
normalisation). The score is the idf-weighted share of the query's words an agent covers,
so it lies in 0..1 and reads as confidence: 0 when nothing matches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pyagent.plugin import render_input

from .text import joined_pairs, meaning_terms, routing_terms

PREFIX_MATCH = 0.8
"""Credit for a stem that only shares a prefix with an agent's stem (the stemmer leaves
"deliv" from "delivered" and "deliveri" from "delivery")."""
_MIN_PREFIX = 5


def _prefix_match(term: str, doc: Counter[str]) -> int:
    """How often ``doc`` has a stem that starts with ``term`` or that ``term`` starts with (5+ letters)."""
    if len(term) < _MIN_PREFIX:
        return 0
    return sum(c for t, c in doc.items()
               if len(t) >= _MIN_PREFIX and (t.startswith(term) or term.startswith(t)))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else render_input(value)


class KeywordRouter:
    """Lexical router: ``score(query, agents)`` ranks agents; ``similarity(a, b)`` compares answers.

    ``name_weight`` counts an agent's name words that many times (a name like "billing" is a
    strong signal); ``k1`` and ``b`` are BM25's term-saturation and length-normalisation knobs.
    """

    name = "keyword"

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, name_weight: int = 2) -> None:
        self.k1 = k1
        self.b = b
        self.name_weight = name_weight

    def _document(self, agent: Any) -> Counter[str]:
        doc = Counter(routing_terms(_text(getattr(agent, "description", "") or "")))
        for term in routing_terms(str(agent.name).replace("_", " ")):
            doc[term] += self.name_weight
        return doc

    def _compare(self, query: Any, agents: Sequence[Any]) -> tuple[set[str], list[Counter[str]]]:
        """The query's terms and one term count per agent, with words split on one side and joined on the other met.

        "log in" in the query becomes "login" when an agent mentions "login" (and the other
        way round), so the query's terms and the agents' documents speak the same words.
        """
        text = _text(query)
        terms = set(routing_terms(text))
        docs = [self._document(a) for a in agents]
        vocabulary = set().union(*docs) if docs else set()
        for joined, parts in joined_pairs(text):
            if joined in vocabulary and joined not in terms:
                terms.difference_update(parts)
                terms.add(joined)
        for agent, doc in zip(agents, docs, strict=True):
            description = _text(getattr(agent, "description", "") or "")
            for joined, _ in joined_pairs(description):
                if joined in terms and joined not in doc:
                    doc[joined] += 1
        return terms, docs

    def score(self, query: Any, agents: Sequence[Any]) -> list[tuple[str, float]]:
        """Every agent's score in 0..1 for ``query``, best first (equal scores keep the given order)."""
        terms, docs = self._compare(query, agents)
        if not terms or not docs:
            return [(a.name, 0.0) for a in agents]
        n = len(docs)
        lengths = [sum(d.values()) for d in docs]
        average = (sum(lengths) / n) or 1.0
        idf = {}
        for t in terms:
            df = sum(1 for d in docs if t in d)
            idf[t] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        total = sum(idf.values())
        scored = []
        for agent, doc, length in zip(agents, docs, lengths, strict=True):
            norm = 1.0 - self.b + self.b * length / average
            covered = 0.0
            for t in terms:
                tf, weight = doc.get(t, 0), 1.0
                if not tf:
                    tf, weight = _prefix_match(t, doc), PREFIX_MATCH
                if tf:
                    covered += weight * idf[t] * min(1.0, tf * (self.k1 + 1.0) / (tf + self.k1 * norm))
            scored.append((agent.name, round(covered / total, 6)))
        return sorted(scored, key=lambda kv: -kv[1])

    def matches(self, query: Any, agent: Any) -> list[str]:
        """The query's stems that ``agent``'s name or description contains (or shares a prefix with)."""
        terms, (doc,) = self._compare(query, [agent])
        return sorted({t for t in terms if t in doc or _prefix_match(t, doc)})

    def similarity(self, a: Any, b: Any) -> float:
        """Cosine similarity of two texts' stems (0..1), negations kept: "adopt" vs "not adopt" differ."""
        ta, tb = _text(a), _text(b)
        va, vb = Counter(meaning_terms(ta)), Counter(meaning_terms(tb))
        if not va or not vb:
            same = " ".join(ta.lower().split()) == " ".join(tb.lower().split())
            return 1.0 if same else 0.0
        dot = sum(c * vb[t] for t, c in va.items())
        norm = math.sqrt(sum(c * c for c in va.values())) * math.sqrt(sum(c * c for c in vb.values()))
        return min(1.0, dot / norm)

    def __repr__(self) -> str:
        return f"KeywordRouter(k1={self.k1}, b={self.b}, name_weight={self.name_weight})"
