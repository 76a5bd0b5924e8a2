"""Retrying every 5xx answer, not only the 500 and 503 of slack-sdk's own server-error handler."""

from __future__ import annotations

from typing import Any

from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler


class ServerErrorsRetryHandler(ServerErrorRetryHandler):
    """Retries any 5xx answer (a proxy in front of Slack answers 502 and 504 too), with backoff."""

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        return response is not None and 500 <= response.status_code < 600
