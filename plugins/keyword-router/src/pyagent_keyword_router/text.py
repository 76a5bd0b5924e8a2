"""Words to stems: tokenizing, stop words, and the two kinds of term lists the router compares."""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

from .stemmer import stem

_WORD = re.compile(r"[a-z0-9]+")
_NOT = re.compile(r"n['’]t\b")
# "can't" is "can not", not "ca" + "not"; likewise "won't" and "shan't".
_IRREGULAR_NOT = re.compile(r"\b(ca|wo|sha)n['’]t\b")
_IRREGULAR_STEM = {"ca": "can", "wo": "will", "sha": "shall"}


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words: they say nothing about which agent fits. Negations are listed separately,
# because they matter when comparing two answers ("adopt" vs "do not adopt").
NEGATIONS = frozenset({"no", "not", "nor", "never", "none", "neither", "cannot", "without"})
STOP_WORDS = _word_set("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let me more
most my myself of off on once only or other ought our ours ourselves out over own same shall she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also may might must us get got s t d ll m re ve
""") | NEGATIONS

# Words people put in requests and agent descriptions that carry no routing signal
# ("You handle ...", "I have a question about ...", "please help me with ...").
FILLER_WORDS = _word_set("""
question questions ask asking hi hello hey please thanks thank help helps need needs want wants like
handle handles handling deal deals dealing agent agents assist assists assistant know tell something
anything thing things issue issues problem problems regarding concerning re
""")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words, with "n't" read as "not"."""
    text = _IRREGULAR_NOT.sub(lambda m: f"{_IRREGULAR_STEM[m.group(1)]} not", text.lower())
    return _WORD.findall(_NOT.sub(" not", text))


@lru_cache(maxsize=4096)
def routing_terms(text: str) -> tuple[str, ...]:
    """Stems of the words that can tell agents apart: no stop words, request filler or single letters."""
    return tuple(stem(w) for w in words(text)
                 if len(w) > 1 and w not in STOP_WORDS and w not in FILLER_WORDS)


@lru_cache(maxsize=4096)
def meaning_terms(text: str) -> tuple[str, ...]:
    """Stems that carry an answer's meaning: stop words out, negations kept."""
    return tuple(stem(w) for w in words(text) if w in NEGATIONS or w not in STOP_WORDS)


@lru_cache(maxsize=4096)
def joined_pairs(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Adjacent words as one word ("log in" -> "login"), each with the routing terms it stands for.

    People write "log in" and "login", "sign up" and "signup"; the router counts a joined pair
    only where the other side has the joined word, so ordinary neighbours never match.
    """
    ws = [w for w in words(text) if w.isalpha()]
    pairs = []
    for first, second in itertools.pairwise(ws):
        parts = tuple(stem(w) for w in (first, second)
                      if len(w) > 1 and w not in STOP_WORDS and w not in FILLER_WORDS)
        pairs.append((stem(first + second), parts))
    return tuple(pairs)
