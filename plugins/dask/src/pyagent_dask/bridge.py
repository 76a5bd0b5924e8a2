"""Handing work between the caller's event loop and the Dask client's loop thread, without blocking.

The Dask client runs on its own thread and event loop, so one client (and one local cluster)
serves runs on any event loop: asyncio or trio, one ``anyio.run`` after another. Calls go to
the client's loop and their results come back through a :class:`Mailbox` on each side, which
wakes the receiving loop with its own thread-safe scheduling call (``call_soon_threadsafe`` /
``run_sync_soon``) once per batch rather than once per call: a fan-out of a thousand calls
costs a few wake-ups, not two thousand. Nothing blocks, so neither loop can wait on the other.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import sniffio

log = logging.getLogger("pyagent.dask")

Schedule = Callable[[Callable[[], Any]], Any]


class Mailbox:
    """Callbacks to run on one event loop, posted from any thread; one wake-up per batch."""

    __slots__ = ("__weakref__", "_items", "_pending", "_quiet", "_schedule")

    def __init__(self, schedule: Schedule, *, quiet: bool = True) -> None:
        self._schedule = schedule
        self._quiet = quiet
        self._items: deque[Callable[[], Any]] = deque()
        self._pending = False

    def post(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` on the loop soon. When the loop has closed, a quiet mailbox drops
        it (nobody is waiting there any more); any other raises."""
        self._items.append(callback)
        if self._pending:
            return
        # A wake-up requested while a drain is running is harmless: the next drain finds
        # nothing or what came in between; an item appended after the drain's last look always
        # finds the flag cleared and asks for its own.
        self._pending = True
        try:
            self._schedule(self._drain)
        except RuntimeError:
            self._pending = False
            if not self._quiet:
                self._items.clear()
                raise

    def _drain(self) -> None:
        self._pending = False
        items = self._items
        while items:
            callback = items.popleft()
            try:
                callback()
            except Exception:  # pragma: no cover - our own callbacks; never stop the others
                log.exception("dask executor callback failed")


_mailboxes: weakref.WeakKeyDictionary[Any, Mailbox] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def current_mailbox() -> Mailbox:
    """The mailbox of the running event loop (asyncio or trio), made on first use."""
    library = sniffio.current_async_library()
    owner: Any
    schedule: Schedule
    if library == "asyncio":
        import asyncio

        owner = asyncio.get_running_loop()
        schedule = owner.call_soon_threadsafe
    elif library == "trio":
        import trio

        owner = trio.lowlevel.current_trio_token()
        schedule = owner.run_sync_soon
    else:
        raise RuntimeError(f"the dask executor runs on asyncio or trio, not {library}")
    box = _mailboxes.get(owner)
    if box is None:
        with _lock:
            box = _mailboxes.get(owner)
            if box is None:
                box = _mailboxes[owner] = Mailbox(schedule)
    return box
