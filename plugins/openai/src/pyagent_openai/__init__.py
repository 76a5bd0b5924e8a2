"""Language models on any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp, LM Studio.

``agent("...", model="openai:gpt-4o-mini")`` or a named endpoint from configuration
(``model="local:qwen2.5-7b"`` with ``[tool.pyagent.models.local] base_url = ...``); with
``PYAGENT_MODEL`` set, ``agent("...")`` needs no ``model=`` at all. The ``openai`` SDK is
imported when a model is first called, not when plugins are discovered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.plugin import ModelNotConfiguredError, hookimpl

from .endpoint import Endpoint

if TYPE_CHECKING:
    from .model import OpenAIModel

__all__ = ["Endpoint", "OpenAIModel", "make_model"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIModel":
        from .model import OpenAIModel

        return OpenAIModel
    raise AttributeError(f"module 'pyagent_openai' has no attribute {name!r}")


def make_model(model_id: str | None, *, endpoint: str = "openai", config: dict[str, Any] | None = None) -> OpenAIModel:
    """The model factory the kernel calls for ``"openai:<id>"`` and for named endpoints."""
    if not model_id:
        raise ModelNotConfiguredError(
            f"no model name for endpoint '{endpoint}': pass model='{endpoint}:<model>' (e.g. "
            f"'{endpoint}:gpt-4o-mini') or set PYAGENT_MODEL; for offline runs pass "
            "model=pyagent.testing.ScriptedModel([...])"
        )
    from .model import OpenAIModel

    return OpenAIModel(model_id, Endpoint.from_config(endpoint, config))


@hookimpl
def pyagent_register_models(register: Any) -> None:
    register("openai", make_model)
