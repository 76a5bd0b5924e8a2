"""Router ``llm``: a language model reads the query and the agents' descriptions and picks one.

``handoff.team([...], router="llm").route(query)``. The model answers with structured output
(the agent's name, a confidence, a reason); the name is checked against the team. An answer
that names no team member, is not valid, or a model that fails, falls back to the ``keyword``
router's scoring, and the decision says why (``router.decisions``, a ``router.fallback``
event and a log line).
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .router import Decision, LLMRouter

__all__ = ["Decision", "LLMRouter", "router"]

router = LLMRouter()
"""The instance registered as ``llm``: the model from PYAGENT_ROUTER_MODEL, else the default model."""


@hookimpl
def pyagent_register_routers(register: Any) -> None:
    register("llm", router)
