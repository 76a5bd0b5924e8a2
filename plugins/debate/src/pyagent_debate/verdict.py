"""The judge's verdict: which side won (or balanced) and the conclusion, parsed from any output.

A function judge may return a dict or a :class:`Verdict`; a language-model judge returns
text ("Winner: pro. The benefits outweigh ...", a JSON object, or prose such as "the
skeptic wins"). Parsing is deliberately forgiving, and a verdict that names no side is
``balanced``: a judge that picks no winner has not picked one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Winner = Literal["pro", "con", "balanced"]

_SIDE_WORDS: dict[str, Winner] = {
    "pro": "pro", "affirmative": "pro", "proponent": "pro", "proposition": "pro",
    "con": "con", "negative": "con", "opponent": "con", "opposition": "con",
    "balanced": "balanced", "tie": "balanced", "tied": "balanced", "draw": "balanced",
    "neither": "balanced", "both": "balanced", "even": "balanced", "none": "balanced",
    "nobody": "balanced", "stalemate": "balanced",
}
# Too common in prose ("the verdict for this debate") to count there; fine as a field value.
_VALUE_WORDS: dict[str, Winner] = {**_SIDE_WORDS, "for": "pro", "against": "con"}
_WINNER_KEYS = ("winner", "verdict", "decision", "side", "result")
_CONCLUSION_KEYS = ("conclusion", "reasoning", "reason", "rationale", "summary", "explanation",
                    "verdict")

_WORD = r"([\w-]+)"
# "Winner: pro", "**Verdict** - the con side", "The winner is the optimist".
_EXPLICIT = re.compile(r"\b(?:winner|verdict|decision|winning\s+side)\b([\s*_:=\-—]*(?:is\s+)?)"
                       r"(?:the\s+)?" + _WORD + r"(?:\s+side\b)?", re.IGNORECASE)
# "There is no winner: ...", "no clear winner": the words after it are not the winner.
_NEGATED = re.compile(r"\b(?:no|not\s+a|without\s+a)\s+(?:(?:clear|single|outright|real|obvious)\s+)?$",
                      re.IGNORECASE)
# What a model puts between "Winner: pro" and its conclusion: "(optimist).", "Conclusion:".
_LABEL = re.compile(r"^[\s*_]*(?:\([^)\n]*\))?[\s.:;,\-—*_)]*"
                    r"(?:(?:conclusion|reasoning|reason|rationale|summary|explanation|because)\b"
                    r"[\s*_]*[:\-—][\s*_]*)?", re.IGNORECASE)
# "The con side wins", "optimist prevails", "in favour of the pro side", "I side with skeptic".
_IMPLICIT = (
    re.compile(_WORD + r"(?:\s+side)?(?:'s?\s+\w+)?\s+(?:wins|won|prevails|prevailed|carries)\b",
               re.IGNORECASE),
    re.compile(r"\bin\s+favou?r\s+of\s+(?:the\s+)?" + _WORD, re.IGNORECASE),
    re.compile(r"\bsides?\s+with\s+(?:the\s+)?" + _WORD, re.IGNORECASE),
)
_BALANCED = re.compile(r"\b(?:balanced|tie|tied|draw|stalemate|neither\s+side|no\s+(?:clear\s+)?winner|"
                       r"evenly\s+matched)\b", re.IGNORECASE)


class Verdict(BaseModel):
    """Who won the debate and why. ``raw`` is the judge's output as it was returned."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    winner: Winner
    conclusion: str
    raw: Any = None

    def __str__(self) -> str:
        return f"{self.winner}: {self.conclusion}"


class JudgeVerdict(BaseModel):
    """What a model judge is asked for as structured output."""

    winner: Winner = Field(description="the side whose arguments were stronger, or balanced")
    conclusion: str = Field(description="the judge's conclusion on the topic, in a few sentences")


def _side(word: str, names: Mapping[str, Winner]) -> Winner | None:
    word = word.casefold()
    return names.get(word) or _SIDE_WORDS.get(word)


def _mentions(text: str, terms: Iterable[str]) -> bool:
    return any(re.search(rf"\b{re.escape(t)}\b", text, re.IGNORECASE) for t in terms if t)


def _explicit_side(match: re.Match[str], text: str, names: Mapping[str, Winner]) -> Winner | None:
    """The side an explicit "Winner: ..." names, or None when it names none (or says there is none)."""
    if _NEGATED.search(text[: match.start()]):
        return None
    word = match.group(2)
    side = _side(word, names)
    if side is None and match.group(1).strip(" \t\n*_"):
        # "Winner: against" names a side; "the verdict for this debate" does not.
        side = _VALUE_WORDS.get(word.casefold())
    return side


def _from_text(text: str, names: Mapping[str, Winner], raw: Any) -> Verdict:
    stripped = text.strip()
    found = ((m, _explicit_side(m, stripped, names)) for m in _EXPLICIT.finditer(stripped))
    explicit = next(((m, side) for m, side in found if side is not None), None)
    if explicit is not None:
        match, winner = explicit
        conclusion = stripped
        # A leading "Winner: pro." is a label, not part of the conclusion.
        if not stripped[: match.start()].strip(" *#_>\n"):
            rest = stripped[match.end():]
            label = _LABEL.match(rest)
            rest = (rest[label.end():] if label else rest).strip()
            conclusion = rest or stripped
        return Verdict(winner=winner, conclusion=conclusion, raw=raw)
    for pattern in _IMPLICIT:
        for m in pattern.finditer(stripped):
            side = _side(m.group(1), names)
            if side is not None:
                return Verdict(winner=side, conclusion=stripped, raw=raw)
    if _BALANCED.search(stripped):
        return Verdict(winner="balanced", conclusion=stripped, raw=raw)
    pro_terms = ["pro", *(n for n, s in names.items() if s == "pro")]
    con_terms = ["con", *(n for n, s in names.items() if s == "con")]
    pro, con = _mentions(stripped, pro_terms), _mentions(stripped, con_terms)
    if pro != con:
        return Verdict(winner="pro" if pro else "con", conclusion=stripped, raw=raw)
    return Verdict(winner="balanced", conclusion=stripped, raw=raw)


def _from_mapping(data: Mapping[str, Any], names: Mapping[str, Winner], raw: Any) -> Verdict:
    lowered = {str(k).casefold(): v for k, v in data.items()}
    winner_key = next((k for k in _WINNER_KEYS if k in lowered), None)
    winner_value = None if winner_key is None else lowered[winner_key]
    conclusion_value = next((lowered[k] for k in _CONCLUSION_KEYS
                             if k in lowered and k != winner_key), None)
    conclusion = "" if conclusion_value is None else str(conclusion_value).strip()
    winner: Winner | None = None
    if winner_value is not None:
        word = str(winner_value).strip().casefold()
        winner = names.get(word) or _VALUE_WORDS.get(word) or _from_text(word, names, raw).winner
    if winner is None:
        winner = _from_text(conclusion, names, raw).winner if conclusion else "balanced"
    if not conclusion:
        conclusion = str(winner_value) if winner_value is not None else json.dumps(data, default=str)
    return Verdict(winner=winner, conclusion=conclusion, raw=raw)


def parse_verdict(output: Any, *, pro_names: Iterable[str] = (), con_names: Iterable[str] = ()) -> Verdict:
    """Read the judge's output as a :class:`Verdict`.

    Accepted: a ``Verdict``; a mapping (or an object/model with a ``winner`` field) with a
    winner ("pro"/"con"/"balanced", "for"/"against", a debater's name) and a conclusion; JSON
    text of such a mapping; or prose, where an explicit "Winner: ..." wins over phrases like
    "the con side wins", then over words like "tie", then over one side being the only one
    mentioned. ``pro_names``/``con_names`` let prose name the debaters ("the skeptic wins").
    """
    names: dict[str, Winner] = {n.casefold(): "pro" for n in pro_names if n}
    names.update({n.casefold(): "con" for n in con_names if n})
    if isinstance(output, Verdict):
        return output
    if isinstance(output, Mapping):
        return _from_mapping(output, names, output)
    if isinstance(output, BaseModel):
        return _from_mapping(output.model_dump(), names, output)
    if hasattr(output, "winner") and not isinstance(output, str):
        fields = {k: getattr(output, k) for k in (*_WINNER_KEYS, *_CONCLUSION_KEYS) if hasattr(output, k)}
        return _from_mapping(fields, names, output)
    text = output if isinstance(output, str) else str(output)
    candidate = text.strip()
    if candidate.startswith("```"):  # a fenced JSON block from a language model
        candidate = candidate.strip("`").removeprefix("json").strip()
    if candidate.startswith("{"):
        try:
            data = json.loads(candidate)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return _from_mapping(data, names, output)
    embedded = _embedded_verdict(text)
    if embedded is not None:  # "Here is my verdict: ```json {...}```"
        return _from_mapping(embedded, names, output)
    return _from_text(text, names, output)


def _embedded_verdict(text: str) -> dict[str, Any] | None:
    """A JSON object with a winner or a conclusion inside prose, if there is one."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start: end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    keys = {str(k).casefold() for k in data}
    return data if keys & {*_WINNER_KEYS, *_CONCLUSION_KEYS} else None
