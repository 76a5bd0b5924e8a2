"""Guardrails for tasks and agents, and the built-in ones.

::

    from pyagent import Task, agent
    from pyagent.guardrails import max_length, deny_regex, json_schema, redact_pii

    writer = agent(write, guardrails=[redact_pii(), max_length(2000)])     # the agent's answers
    Task(name="Answer", agent=writer, input_guardrails=[deny_regex(r"(?i)password")])

A guardrail is a callable (sync or async) returning ``True``/``None`` (pass), ``False``
(block), :class:`Replace` or another value (replace), or raising (block); or a pydantic model
class the value must validate against. ``Guardrail(check, name=, retry=)`` names one or lets
the task's retry policy retry its blocks. See docs/guardrails.md.
"""

from __future__ import annotations

from pyagent.errors import CapabilityError, GuardrailError
from pyagent.model.builtin_guardrails import (
    deny_regex,
    json_schema,
    luhn_valid,
    max_length,
    redact_pii,
)
from pyagent.model.guardrails import Guardrail, Replace

__all__ = [
    "CapabilityError",
    "Guardrail",
    "GuardrailError",
    "Replace",
    "deny_regex",
    "json_schema",
    "luhn_valid",
    "max_length",
    "redact_pii",
]
