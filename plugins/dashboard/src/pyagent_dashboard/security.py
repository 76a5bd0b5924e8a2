"""Who may see the dashboard and act through it, and what it never shows.

With a token, every page and action needs it: as ``Authorization: Bearer TOKEN`` (scripts),
or through the login form, which sets an HttpOnly, SameSite=Strict session cookie derived
from the token (so changing the token signs everyone out). Tokens are compared in constant
time. Actions are POSTs carrying a CSRF token that must match a cookie only this origin can
read (double submit), so another site cannot make a signed-in browser act. Bearer requests
carry no ambient credential and need no CSRF token.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

SESSION_COOKIE = "pyagent_dashboard_session"
CSRF_COOKIE = "pyagent_dashboard_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MASK = "••••••••"
SECRET_KEYS = ("*key*", "*token*", "*secret*", "*password*")


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: proves the token was given, without holding it."""
    return hmac.new(token.encode(), b"pyagent-dashboard-session-v1", hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret: ``api_key``, ``Authorization-Token``, ``db_password``."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in SECRET_KEYS)


def mask(value: Any, _depth: int = 0) -> Any:
    """``value`` with every secret-named key's value replaced, at any depth."""
    if _depth > 64:
        return value
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_key(k) else mask(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return [mask(v, _depth + 1) for v in value]
    return value
