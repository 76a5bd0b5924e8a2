"""Agreement: the share of agents whose answers are equivalent, under a pluggable equivalence."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyagent.plugin import ConfigurationError, get_runtime

Same = Callable[[Any, Any], bool]

_TRAILING = ".!?;:,… \t\n"


def normalise(answer: Any) -> Any:
    """The comparison key of the default equivalence.

    Text is compared ignoring case, runs of whitespace and trailing punctuation, so
    "Yes." and "  yes" agree; anything else (numbers, dicts) is compared as it is.
    """
    if isinstance(answer, str):
        return " ".join(answer.split()).casefold().rstrip(_TRAILING)
    return answer


def same_text(a: Any, b: Any) -> bool:
    """The default equivalence: equal after :func:`normalise`."""
    return bool(normalise(a) == normalise(b))


@dataclass(frozen=True)
class Agreement:
    """The largest group of equivalent answers in one round.

    ``members`` are indices into the round's answers; ``representative`` is the member whose
    answer stands for the group (every other member is equivalent to it). ``tied`` is set when
    another answer, outside the group, has as much support: a split, not an agreement.
    """

    fraction: float
    members: list[int]
    representative: int
    tied: bool = False


def measure(answers: list[Any], same: Same) -> Agreement:
    """Group the answers around each one and keep the largest group.

    A similarity-based equivalence need not be transitive, so each answer gathers the answers
    equivalent to *it*, and the answer with the most support represents the majority. Ties go
    to the earliest agent, so the outcome does not depend on which agent finished first.
    The equivalence is assumed symmetric: each pair is compared once.
    """
    n = len(answers)
    support: list[list[int]] = [[i] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if same(answers[i], answers[j]):
                support[i].append(j)
                support[j].append(i)
    best = max(range(n), key=lambda i: (len(support[i]), -i))
    members = set(support[best])
    tied = any(len(support[j]) == len(members) for j in range(n) if j not in members)
    return Agreement(len(members) / n, sorted(members), best, tied)


def _check_fraction(value: Any, what: str, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{what} must be a number in (0, 1], got {value!r}: e.g. {what}={example}")
    number = float(value)
    if not 0 < number <= 1:  # also rejects NaN, which compares false
        hint = f" (a percentage? give a fraction, e.g. {what}={number / 100:g})" if 2 <= number <= 100 else ""
        raise ConfigurationError(f"{what} must be in (0, 1], got {value!r}{hint}: e.g. {what}={example}")
    return number


def check_threshold(value: Any, what: str = "agreement_threshold") -> float:
    """Validate a fraction in (0, 1] with an error that says how to fix it."""
    return _check_fraction(value, what, "0.8")


def resolve_equivalence(
    equivalence: Any, *, router: str | None = None, similarity_threshold: float = 0.8
) -> tuple[Same, str]:
    """Turn the ``equivalence=`` option into a comparison function and a label for the result.

    ``None``: normalised text. A callable ``(a, b)``: its answer, where a number (a similarity)
    counts as equivalent at or above ``similarity_threshold``. ``"router"``: the installed
    router's ``similarity(a, b)`` against the same threshold.
    """
    threshold = _check_fraction(similarity_threshold, "similarity_threshold", "0.8")
    if equivalence is None:
        return same_text, "normalised text"
    if isinstance(equivalence, str):
        if equivalence != "router":
            raise ConfigurationError(
                f"equivalence={equivalence!r} is not known: pass None (normalised text), a function "
                "(a, b) -> bool or similarity, or 'router' (the installed router's similarity)"
            )
        return _router_similarity(router, threshold)
    if not callable(equivalence):
        raise ConfigurationError(
            f"equivalence must be None, a function (a, b) -> bool or similarity, or 'router'; "
            f"got {type(equivalence).__name__}"
        )
    fn = equivalence

    def same(a: Any, b: Any) -> bool:
        verdict = fn(a, b)
        if isinstance(verdict, numbers.Real) and not isinstance(verdict, bool):
            return float(verdict) >= threshold
        return bool(verdict)

    return same, getattr(fn, "__name__", type(fn).__name__)


def _router_similarity(router: str | None, threshold: float) -> tuple[Same, str]:
    runtime = get_runtime()
    name = router or runtime.default_router_name() or "keyword"
    impl = runtime.lookup("router", name)  # a missing router names the distribution to install
    similarity = getattr(impl, "similarity", None)
    if not callable(similarity):
        raise ConfigurationError(
            f"router {name!r} has no similarity(a, b) method, so it cannot judge whether two answers "
            "agree: install a router that provides one, or pass equivalence=<function>"
        )

    def same(a: Any, b: Any) -> bool:
        text_a = a if isinstance(a, str) else str(a)
        text_b = b if isinstance(b, str) else str(b)
        return float(similarity(text_a, text_b)) >= threshold

    return same, f"router {name!r} similarity >= {threshold:g}"
