"""Router ``embedding``: agents scored by the cosine similarity of sentence embeddings.

``handoff.team([...], router="embedding")``; consensus can use ``similarity`` for answer
equivalence (``equivalence="router", router="embedding"``). numpy, the model and its tokenizer
are loaded on first use, never when plugins are discovered.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .router import EmbeddingModelMissing, EmbeddingRouter, find_model

__all__ = ["EmbeddingModelMissing", "EmbeddingRouter", "find_model", "router", "similarity"]

router = EmbeddingRouter()
"""The instance registered as the ``embedding`` router."""


def similarity(a: Any, b: Any) -> float:
    """Cosine similarity of two texts' sentence embeddings, 0..1."""
    return router.similarity(a, b)


@hookimpl
def pyagent_register_routers(register: Any) -> None:
    register("embedding", router)
