"""Opening a store by its URL, and keeping store errors safe to show.

The driver is found by the URL's scheme (``sqlite://`` → the ``sqlite`` store). Passwords in
URLs are masked in every message, and a store's own exceptions are turned into kernel errors
whose text never carries the data being written.
"""

from __future__ import annotations

import functools
import logging
import re

from pyagent.durability.store import Store
from pyagent.errors import DriverLoadFailure, PluginNotInstalledError, PyAgentError, StoreError

log = logging.getLogger("pyagent.checkpoint")

_CREDENTIALS = re.compile(r"(://[^:/@]+):[^@/]*@")


@functools.lru_cache(maxsize=64)
def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    return _CREDENTIALS.sub(r"\1:***@", url)


def store_scheme(url: str) -> str:
    """The driver name for a store URL: ``postgresql+asyncpg://`` → ``postgresql``."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        scheme, sep, _ = url.partition(":")
    return scheme.split("+", 1)[0].lower()


def make_store(url: str, *, setting: str = "checkpointing.storage") -> Store:
    """Create the store for ``url`` without opening it (its driver is imported now, if it was not)."""
    from pyagent.plugins import get_runtime

    try:
        factory = get_runtime().driver("stores", store_scheme(url))
    except PluginNotInstalledError as exc:
        # Name the setting the URL came from, not only the missing store.
        exc.args = (f"{setting}={safe_url(url)!r}: {exc}",)
        raise
    try:
        store: Store = factory(url)
    except PyAgentError:
        raise
    except Exception as exc:
        raise _not_opened(setting, url, exc) from exc
    return store


async def open_store(url: str, *, setting: str = "checkpointing.storage") -> Store:
    """Create and open the store for ``url`` (PluginNotInstalledError names the plugin to install)."""
    store = make_store(url, setting=setting)
    try:
        await store.open()
    except PyAgentError:
        raise
    except Exception as exc:
        raise _not_opened(setting, url, exc) from exc
    return store


def _not_opened(setting: str, url: str, exc: Exception) -> DriverLoadFailure:
    return DriverLoadFailure(
        f"{setting} {safe_url(url)!r} could not be opened: {type(exc).__name__}: {exc} "
        "(is the database reachable and the URL right?)"
    )


async def _close(store: Store) -> None:
    try:
        await store.close()
    except Exception as exc:  # closing must never hide the run's outcome
        log.warning("closing store %s failed: %s", safe_url(store.url), exc)


def store_failure(store: Store, action: str, exc: Exception) -> PyAgentError:
    """A store's own exception as a kernel error, without its text.

    Stores raise kernel errors with messages safe to show; anything else (a third-party store
    letting a driver error through) may carry the data being written, so only its type is kept
    in the message (the exception stays attached as the cause).
    """
    if isinstance(exc, PyAgentError):
        return exc
    return StoreError(f"{action} in {safe_url(store.url)} failed: {type(exc).__name__} "
                      "(its message is withheld: driver errors may carry the data written)")


close_store = _close
