"""The SDK's exceptions as pyagent errors that name the model, the endpoint and the fix.

Raised ``from None``: the SDK's traceback says nothing the message does not, and a user
reading a failed run's ``error`` should not have to dig through httpx frames.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
from typing import Any

from pyagent.plugin import ModelError

CONTEXT_MARKERS = ("context_length_exceeded", "context length", "maximum context", "context window",
                   "too many tokens", "prompt is too long")


class ModelTimeoutError(ModelError, TimeoutError):
    """The model did not answer within the time left (the task's or pattern's timeout)."""


class ContextLengthError(ModelError):
    """The conversation is longer than the model's context window."""


def retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - _dt.datetime.now(_dt.UTC)).total_seconds())


def translate(exc: BaseException, model: str, endpoint: Any, *, timeout: float | None = None) -> ModelError:
    """The pyagent error for one SDK exception raised while calling ``model`` at ``endpoint``."""
    import openai

    url = endpoint.url
    where = f"model '{model}' at {url}"
    status = getattr(exc, "status_code", None)
    detail = _detail(exc)
    common = {"model": model, "endpoint": url, "status": status}
    if isinstance(exc, openai.APITimeoutError):
        limit = f"within {timeout:g}s (the time its task or pattern allows)" if timeout else "before the request timed out"
        return ModelTimeoutError(
            f"{where} did not answer {limit}: give the task a longer timeout, or a retry_config to try again",
            retryable=True, **common)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else detail
        return ModelError(
            f"cannot reach endpoint '{endpoint.name}' at {url} for model '{model}' ({reason}): start the "
            f"server, or fix {endpoint.url_setting}", retryable=True, **common)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ModelError(
            f"{where} refused the API key ({status}: {detail}): set {endpoint.key_setting} to a valid key "
            "for this endpoint", retryable=False, **common)
    if isinstance(exc, openai.NotFoundError):
        return ModelError(
            f"{where}: the endpoint does not serve this model ({status}: {detail}): check the model name "
            f"(GET {url}/models lists them) or {endpoint.url_setting}", retryable=False, **common)
    if isinstance(exc, openai.RateLimitError):
        wait = retry_after(exc.response.headers)
        after = f"; the server asks to retry after {wait:g}s" if wait is not None else ""
        return ModelError(
            f"{where} is rate limited ({status}: {detail}{after}): give the task a retry_config to retry "
            "(Retry-After is honoured), or lower max_concurrency for this endpoint",
            retryable=True, retry_after=wait, **common)
    if isinstance(exc, openai.BadRequestError) or status in (400, 413, 422):
        if _is_context_length(exc, detail):
            return ContextLengthError(
                f"{where}: the conversation is longer than the model's context window ({detail}): shorten the "
                "input, lower max_tool_calls, or use a model with a larger context", retryable=False, **common)
        return ModelError(f"{where} rejected the request ({status}: {detail})", retryable=False, **common)
    if isinstance(exc, openai.APIStatusError) and status is not None and status >= 500:
        wait = retry_after(exc.response.headers)
        return ModelError(
            f"{where} failed with a server error ({status}: {detail}): give the task a retry_config to retry",
            retryable=True, retry_after=wait, **common)
    if isinstance(exc, openai.APIStatusError):
        return ModelError(f"{where} answered {status}: {detail}", retryable=False, **common)
    return ModelError(f"{where} failed: {type(exc).__name__}: {exc}", retryable=False, **common)


def _detail(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    message = getattr(exc, "message", None)
    return str(message or exc)


def _is_context_length(exc: BaseException, detail: str) -> bool:
    code = str(getattr(exc, "code", "") or "")
    text = f"{code} {detail}".lower()
    return any(marker in text for marker in CONTEXT_MARKERS)
