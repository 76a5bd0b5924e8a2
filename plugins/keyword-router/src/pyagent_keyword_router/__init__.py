"""pyagent's default router: picks the agent whose name and description match a query's words."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .router import KeywordRouter
from .stemmer import stem

__all__ = ["KeywordRouter", "router", "similarity", "stem"]

router = KeywordRouter()
"""The instance registered as the ``keyword`` router."""


def similarity(a: Any, b: Any) -> float:
    """Cosine similarity of two texts' stems, 0..1 (the default router's answer equivalence)."""
    return router.similarity(a, b)


@hookimpl
def pyagent_register_routers(register: Any) -> None:
    register("keyword", router, default=True)
