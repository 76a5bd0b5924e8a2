"""A webhook: one HTTP path that starts runs of one workflow (``orchestrator.on_webhook``)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pyagent.plugin import ConfigurationError, Workflow

AUTH = ("hmac", "bearer")
RESERVED = ("/runs", "/healthz")
SIGNATURE_HEADER = "x-signature-256"


class Webhook:
    """``POST path`` with a JSON body starts ``workflow`` with the body as input.

    ``auth="hmac"`` checks ``X-Signature-256: sha256=<hex>`` (HMAC-SHA256 of the raw body with
    ``secret``, GitHub's scheme); ``auth="bearer"`` checks ``Authorization: Bearer <secret>``;
    a ``secret`` without ``auth`` means HMAC. ``max_body`` bytes at most (413 beyond);
    ``max_pending`` accepted runs waiting to start at most (429 beyond).
    """

    def __init__(self, orchestrator: Any, workflow: Workflow, *, path: str, secret: str | bytes | None = None,
                 auth: str | None = None, max_body: int = 1_048_576, max_pending: int = 1000) -> None:
        if not isinstance(path, str) or not path.startswith("/") or path != path.strip() or "?" in path:
            raise ConfigurationError(f"webhook path {path!r}: give a URL path starting with '/', e.g. '/api/trigger'")
        path = path.rstrip("/") or "/"
        if any(path == r or path.startswith(r + "/") for r in RESERVED):
            raise ConfigurationError(f"webhook path {path!r} is reserved for the status API: pick another path")
        for other in orchestrator.triggers:
            if isinstance(other, Webhook) and other.path == path:
                raise ConfigurationError(f"a webhook at {path!r} exists already (for {other.workflow.name!r})")
        if auth is None and secret is not None:
            auth = "hmac"
        if auth is not None and auth not in AUTH:
            raise ConfigurationError(f"auth={auth!r}: use None, 'hmac' or 'bearer'")
        if auth is not None and not secret:
            raise ConfigurationError(f"auth={auth!r} needs secret=...: the shared secret or token")
        if secret is not None and not isinstance(secret, (str, bytes)):
            raise ConfigurationError(f"secret must be a string or bytes, got {type(secret).__name__}")
        for name, value in (("max_body", max_body), ("max_pending", max_pending)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name}={value!r}: give a whole number >= 1")
        self.orchestrator = orchestrator
        self.workflow = workflow
        self.path = path
        self.auth = auth
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.max_body = max_body
        self.max_pending = max_pending

    def signature_ok(self, body: bytes, header: str | None) -> bool:
        """Whether ``header`` is ``sha256=<hex>`` of ``body`` under the secret (constant time)."""
        assert self._secret is not None
        if not header or not header.startswith("sha256="):
            return False
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), header[len("sha256="):].strip().lower().encode())

    def token_ok(self, header: str | None) -> bool:
        """Whether ``header`` is ``Bearer <secret>`` (constant time)."""
        assert self._secret is not None
        if not header or header[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(self._secret, header[7:].strip().encode())

    def run_id_for(self, key: str) -> str:
        """The run id an ``Idempotency-Key`` maps to: the same for the same path and key, always."""
        digest = hashlib.sha256(f"{self.path}\0{key}".encode()).hexdigest()
        return f"webhook-{digest[:32]}"

    def remove(self) -> None:
        self.orchestrator.remove_trigger(self)

    def describe(self) -> str:
        auth = f", auth={self.auth}" if self.auth else ""
        return f"webhook POST {self.path} -> {self.workflow.name!r}{auth}"

    def __repr__(self) -> str:
        return f"Webhook({self.path!r} -> {self.workflow.name!r})"
