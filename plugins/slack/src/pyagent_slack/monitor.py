"""``SlackMonitor``: Slack notifications, delivered by a background thread that never blocks a run.

The run's event loop only files a notification into a bounded queue (a few microseconds,
and only for events that notify: nothing at all per task otherwise). A daemon thread sends
them with slack-sdk, whose retry handlers honour 429 Retry-After; 5xx answers and broken
connections are retried with backoff. Notifications of one kind for one workflow are
grouped: those arriving within ``group_wait`` seconds go out as one message with a count,
and after a message, more of the same kind wait ``coalesce_window`` seconds and go out
together. When the queue is full the oldest is dropped and counted (``dropped``).
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from pyagent.plugin import ConfigurationError, Event, events
from pyagent_slack.messages import DEFAULT_ON, NOTIFICATIONS, Batch, build

log = logging.getLogger("pyagent.slack")

_RUN_ENDS = (events.WORKFLOW_COMPLETED, events.WORKFLOW_FAILED, events.WORKFLOW_CANCELLED)
_REMEMBERED = 10_000  # failing tasks and paused runs remembered per monitor, oldest forgotten first


class SlackMonitor:
    """Notifies a Slack channel: ``SlackMonitor(webhook_url=...)`` or ``SlackMonitor(token=..., channel=...)``.

    Without either, ``SLACK_WEBHOOK_URL`` or ``SLACK_BOT_TOKEN`` with ``SLACK_CHANNEL`` are read.
    ``on`` chooses what notifies (default: failed runs, an opened circuit breaker, and runs that
    end after being paused); ``link`` is a URL template with ``{run_id}`` and ``{workflow}``.
    ``close()`` sends what is pending within ``flush_timeout`` seconds (also done at exit).
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        token: str | None = None,
        channel: str | None = None,
        on: Iterable[str] | str | None = None,
        link: str | None = None,
        queue_size: int = 100,
        group_wait: float = 2.0,
        coalesce_window: float = 60.0,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        flush_timeout: float = 5.0,
        base_url: str | None = None,
    ) -> None:
        if webhook_url is None and token is None:
            webhook_url = os.environ.get("SLACK_WEBHOOK_URL") or None
            token = os.environ.get("SLACK_BOT_TOKEN") or None
            channel = channel or os.environ.get("SLACK_CHANNEL") or None
        if webhook_url is not None and token is not None:
            raise ConfigurationError("SlackMonitor takes webhook_url= or token= (with channel=), not both")
        if webhook_url is None and token is None:
            raise ConfigurationError(
                "SlackMonitor needs where to send: webhook_url='https://hooks.slack.com/services/...', "
                "or token='xoxb-...' with channel='#ops' (or set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN "
                "and SLACK_CHANNEL)"
            )
        if token is not None and not channel:
            raise ConfigurationError("SlackMonitor(token=...) needs channel='#ops' (or SLACK_CHANNEL) to post to")
        for name, value, low in (("queue_size", queue_size, 1), ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"SlackMonitor {name} must be a whole number >= {low}, got {value!r}")
        for name, number in (("group_wait", group_wait), ("coalesce_window", coalesce_window),
                             ("backoff", backoff), ("flush_timeout", flush_timeout)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise ConfigurationError(f"SlackMonitor {name} must be seconds >= 0, got {number!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"SlackMonitor timeout must be seconds > 0, got {timeout!r}")
        if base_url is not None and not base_url.endswith("/"):
            raise ConfigurationError(f"SlackMonitor base_url must end with '/', got {base_url!r}: e.g. 'https://slack.com/api/'")
        self.notifications = _parse_on(on)
        if link is not None:
            try:
                link.format(run_id="r", workflow="w")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigurationError(
                    f"SlackMonitor link {link!r} is not a valid template: {exc!r}; it may use {{run_id}} and {{workflow}}"
                ) from None
        self.link = link
        self.channel = channel
        self._webhook_url = webhook_url
        self._token = token
        self._base_url = base_url
        self.enabled = True
        if webhook_url is not None and urlsplit(webhook_url).scheme not in ("http", "https"):
            # A placeholder (the specification writes webhook_url="..."): say so once, send nothing.
            self.enabled = False
            log.warning("SlackMonitor: webhook_url is not an http(s) URL, so no notification will be sent: "
                        "pass the incoming-webhook URL Slack gave you")
        self.queue_size = queue_size
        self.group_wait = float(group_wait)
        self.coalesce_window = float(coalesce_window)
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.flush_timeout = float(flush_timeout)
        self.sent = 0  # messages delivered
        self.failed = 0  # messages that could not be delivered after retries
        self.dropped = 0  # notifications dropped because the queue was full
        self.coalesced = 0  # notifications merged into another message
        self._pending: OrderedDict[tuple[str, str], Batch] = OrderedDict()
        self._quiet_until: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._busy = False
        self._client: Any = None
        self._failing: OrderedDict[str, dict[str, Any]] = OrderedDict()  # run id -> its failed task
        self._paused: OrderedDict[str, None] = OrderedDict()
        kinds: set[str] = set()
        for name in self.notifications:
            kinds.update(NOTIFICATIONS[name])
        self.event_kinds = frozenset(kinds) if self.enabled else frozenset()

    # -- the run's side: cheap, never blocks -----------------------------------------------

    def on_event(self, event: Event) -> None:
        kind = event.kind
        wanted = self.notifications
        if kind == events.TASK_FAILED:
            _remember(self._failing, event.run_id, {"task": event.task, "error": event.data.get("error"),
                                                    "attempts": event.data.get("attempts")})
            if "task.failed" in wanted:
                self._notify("task.failed", event, self._details(event))
            return
        if kind == events.WORKFLOW_WAITING:
            _remember(self._paused, event.run_id, None)
            return
        if kind in _RUN_ENDS:
            failing = self._failing.pop(event.run_id, None)
            if event.run_id in self._paused and "paused_run.ended" in wanted:
                self._paused.pop(event.run_id, None)
                self._notify("paused_run.ended", event, self._details(event))
            if kind in wanted:
                details = self._details(event)
                if failing:
                    details.update({k: v for k, v in failing.items() if v is not None})
                    details["error"] = failing.get("error") or details.get("error")
                self._notify(kind, event, details)
            return
        if kind == events.CIRCUIT_CHANGED:
            if "circuit.opened" in wanted and event.data.get("to") == "open":
                self._notify("circuit.opened", event, self._details(event))
            if "circuit.changed" in wanted:
                self._notify("circuit.changed", event, self._details(event))
            return
        if kind in wanted:
            self._notify(kind, event, self._details(event))

    @staticmethod
    def _details(event: Event) -> dict[str, Any]:
        data = event.data
        details = {"run_id": event.run_id, "task": event.task, "status": event.status,
                   "error": data.get("error"), "duration": data.get("duration"),
                   "attempts": data.get("attempts")}
        if event.kind == events.CIRCUIT_CHANGED:
            details["reason"] = data.get("reason")
        if event.kind == events.HANDOFF:
            details["reason"] = f"{data.get('from_agent')} → {data.get('to_agent')}: {data.get('reason')}"
        return details

    def _notify(self, notification: str, event: Event, details: dict[str, Any]) -> None:
        key = (notification, event.workflow)
        with self._cond:
            if self._closing:  # closed: nothing would send it
                self.dropped += 1
                return
            batch = self._pending.get(key)
            if batch is not None:
                batch.add(details)
                self.coalesced += 1
            else:
                if len(self._pending) >= self.queue_size:
                    _, oldest = self._pending.popitem(last=False)
                    self.dropped += oldest.count
                    log.warning("Slack notification queue is full (%d): dropped the oldest (%s of %r)",
                                self.queue_size, oldest.key[0], oldest.key[1])
                self._pending[key] = Batch(key, details)
            self._cond.notify()
            if self._thread is None:
                self._start()

    # -- the delivery thread ---------------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="pyagent-slack", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (m := ref()) is not None and m.close())

    def _next(self) -> Batch | None:
        """The next batch that is due, waiting until one is; None once closed and empty."""
        with self._cond:
            while True:
                now = time.monotonic()
                wait: float | None = None
                for key, batch in self._pending.items():
                    due = max(batch.first_seen + self.group_wait, self._quiet_until.get(key, 0.0))
                    if self._closing or due <= now:
                        del self._pending[key]
                        self._busy = True
                        return batch
                    wait = due - now if wait is None else min(wait, due - now)
                if self._closing:
                    return None
                self._cond.wait(wait)

    def _work(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._quiet_until[batch.key] = time.monotonic() + self.coalesce_window
                    self._cond.notify_all()

    def _deliver(self, batch: Batch) -> None:
        text, blocks = build(batch, self.link)
        try:
            client = self._client or self._make_client()
            if self._webhook_url is not None:
                response = client.send(text=text, blocks=blocks)
                if not 200 <= response.status_code < 300:
                    raise RuntimeError(f"Slack answered {response.status_code}: {str(response.body)[:200]}")
            else:
                client.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
        except Exception as exc:
            self.failed += 1
            # Never the token or the webhook URL (both are secrets): the error's type and Slack's answer.
            log.warning("Slack notification (%s of %r) not delivered to %s: %s: %s", batch.key[0],
                        batch.key[1], self._where(), type(exc).__name__, _redact(str(exc), self._secrets()))
            return
        self.sent += 1

    def _make_client(self) -> Any:
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
        )
        from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

        from pyagent_slack.retry import ServerErrorsRetryHandler

        handlers = [
            RateLimitErrorRetryHandler(max_retry_count=self.max_retries),
            ServerErrorsRetryHandler(max_retry_count=self.max_retries,
                                     interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=self.backoff)),
            ConnectionErrorRetryHandler(max_retry_count=self.max_retries,
                                        interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=self.backoff)),
        ]
        # slack-sdk logs the webhook URL (the secret) at DEBUG, and at INFO when it retries: its
        # lines go through a logger of ours that takes the secrets out.
        logger = _sdk_logger(self._secrets())
        if self._webhook_url is not None:
            from slack_sdk.webhook import WebhookClient

            self._client = WebhookClient(self._webhook_url, timeout=int(max(self.timeout, 1)), retry_handlers=handlers,
                                         logger=logger)
        else:
            from slack_sdk import WebClient

            kwargs: dict[str, Any] = {"base_url": self._base_url} if self._base_url else {}
            self._client = WebClient(token=self._token, timeout=int(max(self.timeout, 1)),
                                     retry_handlers=handlers, logger=logger, **kwargs)
        return self._client

    # -- shutting down ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything pending now (ignoring the grouping delays); True if it all went out in time."""
        deadline = time.monotonic() + (self.flush_timeout if timeout is None else timeout)
        with self._cond:
            for batch in self._pending.values():
                batch.first_seen = float("-inf")
            for key in list(self._quiet_until):
                self._quiet_until[key] = 0.0
            self._cond.notify_all()
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return not self._pending and not self._busy
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Send what is pending within ``flush_timeout`` seconds, then stop the delivery thread."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return
        thread.join(self.flush_timeout)
        if thread.is_alive():
            with self._cond:
                left = len(self._pending) + (1 if self._busy else 0)
            log.warning("SlackMonitor closed with %d notification(s) not delivered within flush_timeout=%gs",
                        left, self.flush_timeout)

    # -- secrets stay out of reprs and logs ------------------------------------------------

    def _secrets(self) -> list[str]:
        return [s for s in (self._token, self._webhook_url) if s]

    def _where(self) -> str:
        if self._webhook_url is not None:
            return f"webhook at {urlsplit(self._webhook_url).hostname}"
        return f"channel {self.channel}"

    def __repr__(self) -> str:
        return f"SlackMonitor({self._where()}, on={sorted(self.notifications)})"


def _parse_on(on: Iterable[str] | str | None) -> frozenset[str]:
    names = list(DEFAULT_ON) if on is None else ([on] if isinstance(on, str) else list(on))
    for name in names:
        if name not in NOTIFICATIONS:
            close = difflib.get_close_matches(str(name), list(NOTIFICATIONS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigurationError(
                f"SlackMonitor on= has no notification {name!r}: {hint}choose from {', '.join(NOTIFICATIONS)}"
            )
    return frozenset(names)


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    if len(table) > _REMEMBERED:
        table.popitem(last=False)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


class _Redacting(logging.Filter):
    """Takes the secrets (tokens, webhook URLs and their paths) out of the lines slack-sdk logs."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # Longest first: a webhook URL before its own path.
        redacted = _redact(message, sorted(self.secrets, key=len, reverse=True))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_redacting = _Redacting()


def _sdk_logger(secrets: list[str]) -> logging.Logger:
    """slack-sdk's logger for our clients: under ``slack_sdk`` (its levels and handlers apply), redacted."""
    for secret in secrets:
        _redacting.secrets.add(secret)
        path = urlsplit(secret).path
        if len(path) > 8:  # a webhook's /services/T.../B.../secret, logged on its own by some versions
            _redacting.secrets.add(path)
    logger = logging.getLogger("slack_sdk.pyagent")
    if _redacting not in logger.filters:
        logger.addFilter(_redacting)
    return logger
