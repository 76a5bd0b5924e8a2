"""Where a model is served: the ``openai`` endpoint, or one named in configuration.

``model="openai:gpt-4o-mini"`` uses OpenAI itself (``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
are honoured). ``model="local:qwen2.5-7b"`` uses the endpoint configured as ``local``::

    [tool.pyagent.models.local]
    base_url = "http://127.0.0.1:8000/v1"    # vLLM, Ollama, llama.cpp server, LM Studio, a gateway
    api_key_env = "LOCAL_KEY"                # optional: local servers usually need no key
    max_concurrency = 8                      # requests in flight to this model at most
    structured_output = "json_schema"        # or "json_object" / "prompt" for servers without it

A table named ``openai`` configures the ``openai`` endpoint itself (its limits, say).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyagent.plugin import ConfigurationError, ModelNotConfiguredError

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "no-key-needed"  # the SDK insists on some key; servers without authentication ignore it


class Endpoint(BaseModel):
    """One configured endpoint (validated, so a typo in a key is a clear error)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "openai"
    provider: str = "openai"
    base_url: str | None = None
    api_key: str | None = Field(default=None, description="the key itself (prefer api_key_env)")
    api_key_env: str | None = Field(default=None, description="the environment variable holding the key")
    max_concurrency: int | None = Field(default=None, ge=1, description="requests in flight to one model at most")
    structured_output: Literal["json_schema", "json_object", "prompt"] = "json_schema"
    timeout: float | None = Field(default=None, gt=0, description="seconds per request when no task timeout applies")
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra request fields a server understands")

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any] | None) -> Endpoint:
        try:
            return cls(name=name, **(config or {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            valid = ", ".join(k for k in cls.model_fields if k != "name")
            raise ConfigurationError(
                f"model endpoint '{name}' ([tool.pyagent.models.{name}]) is invalid: {problems} (valid keys: {valid})"
            ) from None

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.name == "openai":
            return (os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        raise ConfigurationError(
            f"model endpoint '{self.name}' has no base_url: set base_url in [tool.pyagent.models.{self.name}], "
            "e.g. base_url = \"http://127.0.0.1:8000/v1\""
        )

    @property
    def key_setting(self) -> str:
        """Where the key is read from, for messages."""
        if self.api_key_env:
            return self.api_key_env
        if self.api_key:
            return f"api_key in [tool.pyagent.models.{self.name}]"
        return "OPENAI_API_KEY"

    @property
    def url_setting(self) -> str:
        """Where the base URL is set, for messages."""
        if self.base_url or self.name != "openai":
            return f"base_url in [tool.pyagent.models.{self.name}]"
        return "OPENAI_BASE_URL"

    def key(self, model: str) -> str:
        """The API key, or a ModelNotConfiguredError naming where to put one (OpenAI itself needs one)."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value:
                return value
            if self.url.startswith(OPENAI_URL):
                raise _no_key(model, self, self.api_key_env)
            return NO_KEY
        value = os.environ.get("OPENAI_API_KEY") if self.name == "openai" else None
        if value:
            return value
        if self.url.startswith(OPENAI_URL):
            raise _no_key(model, self, "OPENAI_API_KEY")
        return NO_KEY


def _no_key(model: str, endpoint: Endpoint, variable: str) -> ModelNotConfiguredError:
    return ModelNotConfiguredError(
        f"model '{model}' at {endpoint.url} needs an API key and {variable} is not set: export {variable}=sk-... "
        f"(or point the endpoint at a local server: {endpoint.url_setting})"
    )
