"""Run ownership: one process at a time runs a given run id, by holding its lease in the store.

Every run recorded in a store claims its run id before any agent runs: a fresh run, a resume
by run id, a resume from a state file. The claim is a lease (see :mod:`pyagent.durability.store`):
renewed in the background while the run goes on, released when it ends, and left to expire
when the owner dies, so a crashed run stays resumable. A second claimant gets
:class:`~pyagent.errors.RunOwnedError` naming the owner and when its lease runs out, or waits
for the claim when asked to (``wait=True``).

Owner ids are ``host:pid:random`` by default (``PYAGENT_OWNER_ID`` or the ``owner_id``
setting override it, e.g. with a replica's name). The default id also tells whether its
process ran on this machine in this pid namespace: when it did and that process no longer
exists, its lease is taken over at once instead of after it expires, so resuming a run
right after its process was killed needs no wait. Anything less certain (another host,
another container, an owner id set by hand, a process that still exists) waits for expiry.

Lease times come from the runtime clock (``runtime.clock.time()``), so tests can expire a
lease by moving a manual clock; the renewal loop sleeps in real time.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from pyagent.errors import ConfigurationError, RunOwnedError

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from pyagent.clock import Clock
    from pyagent.durability.store import Lease, Store
    from pyagent.model.policies import CheckpointConfig

log = logging.getLogger("pyagent.ownership")

OWNER_ENV = "PYAGENT_OWNER_ID"
#: How long a lease lasts unless renewed, and how often its owner renews it (seconds).
DEFAULT_LEASE_SECONDS = 15.0
DEFAULT_RENEW_SECONDS = 5.0
#: Default bound on ``wait=True``.
DEFAULT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class LeaseSettings:
    """How long a claim lasts (``ttl``) and how often it is renewed (``renew_every``)."""

    ttl: float = DEFAULT_LEASE_SECONDS
    renew_every: float = DEFAULT_RENEW_SECONDS

    @classmethod
    def of(cls, config: CheckpointConfig | None) -> LeaseSettings:
        if config is None:
            return cls()
        return cls(config.lease_seconds, config.renew_every)


# -- owner ids -------------------------------------------------------------------------------

_default: tuple[int, str] | None = None


def _machine_key() -> str | None:
    """Six hex digits naming this boot and pid namespace (Linux), or None where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return hashlib.sha256(f"{boot}:{pidns}".encode()).hexdigest()[:6]


def default_owner() -> str:
    """``host:pid:random`` for this process (a new one after a fork)."""
    global _default
    pid = os.getpid()
    if _default is None or _default[0] != pid:
        key = _machine_key() or ""
        _default = (pid, f"{socket.gethostname()}:{pid}:{key}{secrets.token_hex(4)}")
    return _default[1]


def owner_id() -> str:
    """The owner id claims are made under: the configured one, else :func:`default_owner`."""
    from pyagent.config import get_settings

    configured = get_settings().owner_id  # keyword, pyagent.toml, then PYAGENT_OWNER_ID
    if configured:
        check_owner_id(configured)
        return configured
    return default_owner()


def check_owner_id(owner: str) -> None:
    if not owner.strip() or "\x00" in owner or len(owner) > 200:
        raise ConfigurationError(
            f"owner id {owner!r} is not usable: give a non-empty name of at most 200 characters "
            f"without NUL characters (set {OWNER_ENV} or the owner_id setting), or leave it unset "
            "for host:pid:random"
        )


def _dead_here(owner: str) -> bool:
    """True when ``owner`` is a default id of a process of this machine and pid namespace that
    no longer exists. False whenever that cannot be known for sure."""
    parts = owner.split(":")
    key = _machine_key()
    if len(parts) != 3 or key is None or parts[0] != socket.gethostname():
        return False
    pid_text, rand = parts[1], parts[2]
    if not pid_text.isdigit() or not rand.startswith(key) or len(rand) != len(key) + 8:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != default_owner()  # this process under an earlier id: not possible but safe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by another user
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but its parent has not reaped it yet (a parent that killed its
    child and resumes the run before waiting for it): dead, though its pid is still taken."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]  # after "(command name)", which may hold spaces
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _when(ts: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):  # a clock far off (or a test's manual clock)
        return f"{ts:.0f} (epoch seconds)"


def owned_error(lease: Lease, where: str, now: float, *, waited: float | None = None) -> RunOwnedError:
    left = lease.expires_at - now
    expiry = (f"its lease expires at {_when(lease.expires_at)}, in {left:.1f} s, unless renewed"
              if left > 0 else f"its lease expired at {_when(lease.expires_at)}")
    if waited is None:
        fix = ("it is running elsewhere: run it from one place at a time, or pass wait=True "
               "(pyagent resume --wait) to wait for the claim")
    else:
        fix = f"waited {waited:.1f} s for the claim; wait longer with wait_timeout=..."
    return RunOwnedError(
        f"run {lease.run_id!r} in {where} is owned by {lease.owner} ({expiry}): {fix}",
        run_id=lease.run_id, owner=lease.owner, expires_at=lease.expires_at,
    )


# -- one claim ---------------------------------------------------------------------------------


class Ownership:
    """This process's claim on one run: claim, keep alive in the background, release."""

    def __init__(self, store: Store, run_id: str, *, clock: Clock, settings: LeaseSettings | None = None,
                 where: str | None = None, owner: str | None = None, token: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.settings = settings or LeaseSettings()
        self.where = where or store.url
        self.owner = owner or owner_id()
        self.token = token or secrets.token_hex(16)
        self.lease: Lease | None = None
        self.lost: RunOwnedError | None = None
        self.scope: Any = contextlib.nullcontext()  # the run's body, cancelled when the lease is lost
        self.task_group: anyio.abc.TaskGroup | None = None  # for background work while held

    @classmethod
    def holding(cls, store: Store, lease: Lease, *, clock: Clock, where: str | None = None) -> Ownership:
        """This process's hold on ``lease``, a claim made already (a run taken off a store's queue
        by ``dequeue_runs``): kept alive, fenced and released like one :meth:`claim` made."""
        ttl = max(lease.expires_at - lease.claimed_at, 0.001)
        own = cls(store, lease.run_id, clock=clock, settings=LeaseSettings(ttl, ttl / 3), where=where,
                  owner=lease.owner, token=lease.token)
        own.lease = lease
        return own

    @property
    def fence(self) -> str:
        return self.token

    async def claim(self, *, wait: bool = False, timeout: float | None = None) -> Lease:
        """Take the lease, or raise RunOwnedError (after waiting up to ``timeout`` s with ``wait``)."""
        ttl = self.settings.ttl
        started = time.monotonic()
        limit = DEFAULT_WAIT_SECONDS if timeout is None else timeout
        poll = min(1.0, max(0.05, ttl / 10))
        while True:
            now = self.clock.time()
            lease = await self.store.claim_run(self.run_id, self.owner, self.token, now=now, ttl=ttl)
            if lease.token != self.token and _dead_here(lease.owner):
                log.info("run %s: its owner %s is no longer running; taking it over", self.run_id, lease.owner)
                lease = await self.store.claim_run(self.run_id, self.owner, self.token, now=now, ttl=ttl,
                                                   replace=lease.token)
            if lease.token == self.token:
                self.lease = lease
                return lease
            waited = time.monotonic() - started
            if not wait or waited >= limit:
                raise owned_error(lease, self.where, now, waited=waited if wait else None)
            await anyio.sleep(min(poll, limit - waited))

    async def adopt(self, settings: LeaseSettings) -> None:
        """Use ``settings`` from now on (a claim made before the workflow was known), renewing
        once at once so the lease already lasts as long as they say."""
        if settings == self.settings:
            return
        self.settings = settings
        if self.lease is None:
            return
        try:
            await self.store.renew_lease(self.run_id, self.token, now=self.clock.time(), ttl=settings.ttl)
        except Exception as exc:  # the keeper renews again soon
            log.warning("run %s: renewing its lease in %s failed (%s: %s)", self.run_id, self.where,
                        type(exc).__name__, exc)

    async def keep_alive(self) -> None:
        """Renew the lease until cancelled; a lost lease cancels the run's scope."""
        interval = self.settings.renew_every
        while True:
            await anyio.sleep(interval)
            next_in = await self.renew()
            if next_in is None:
                return
            interval = next_in

    async def renew(self, still_held: Callable[[], bool] | None = None) -> float | None:
        """Renew the lease once: the seconds until the next renewal, or None when the lease was
        lost (the run's scope is then cancelled). A failed call is retried sooner: the store
        may be back in a moment, and the run's writes are fenced meanwhile. ``still_held()``
        False after the call: the run gave the lease back meanwhile, and nothing was lost."""
        every = self.settings.renew_every
        try:
            # Bounded: a store that hangs (a server gone silent) must not stall the keeper.
            with anyio.fail_after(max(self.settings.ttl, 1.0)):
                renewed = await self.store.renew_lease(self.run_id, self.token, now=self.clock.time(),
                                                       ttl=self.settings.ttl)
        except Exception as exc:
            log.warning("run %s: renewing its lease in %s failed (%s: %s); retrying",
                        self.run_id, self.where, type(exc).__name__, exc)
            return min(every, 1.0)
        if renewed:
            return every
        if self.lease is None or (still_held is not None and not still_held()):
            return None  # given back meanwhile (with the run's last write, or released): nothing lost
        await self._lose()
        return None

    def refused(self, exc: RunOwnedError) -> None:
        """A write of this run was refused because another claim holds its lease now: stop the
        run as when the keeper notices (cancelled, with ``exc``), and write nothing more."""
        if self.lost is None:
            self.lost = exc
            log.error("run %s: %s; this process stopped running it", self.run_id, exc)
        if isinstance(self.scope, anyio.CancelScope):
            self.scope.cancel()

    async def _lose(self) -> None:
        holder = None
        with contextlib.suppress(Exception):
            holder = await self.store.get_lease(self.run_id)
        by = f" by {holder.owner}" if holder is not None and holder.token != self.token else ""
        self.lost = RunOwnedError(
            f"run {self.run_id!r} in {self.where} was taken over{by} while this process ran it "
            "(it did not renew its lease in time): this process stopped running it",
            run_id=self.run_id, owner=None if holder is None else holder.owner,
            expires_at=None if holder is None else holder.expires_at,
        )
        log.error("%s", self.lost)
        if isinstance(self.scope, anyio.CancelScope):
            self.scope.cancel()

    @contextlib.asynccontextmanager
    async def held(self, *, background: bool = False) -> AsyncIterator[None]:
        """Keep the lease alive while the body runs: by the serving host's :class:`LeaseKeeper`
        when the run is one of its runs, else by a task of its own in the background.

        ``background``: the body starts background work (``task_group``), so one is needed
        even when the keeper renews. The body's own exception (or cancellation) comes out as
        it is, not in a group.
        """
        self.scope = anyio.CancelScope()
        keeper = current_keeper()
        if keeper is not None and not background:
            keeper.hold(self)
            try:
                yield
            finally:
                keeper.drop(self)
            return
        error: BaseException | None = None
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            if keeper is None:
                tg.start_soon(self.keep_alive)
            else:
                keeper.hold(self)
            try:
                yield
            except BaseException as exc:
                error = exc
            finally:
                self.task_group = None
                if keeper is not None:
                    keeper.drop(self)
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    async def release(self) -> None:
        """Give the lease back (shielded: a cancelled run still releases its run)."""
        if self.lease is None or self.lost is not None:
            return
        with anyio.move_on_after(10, shield=True):
            try:
                await self.store.release_run(self.run_id, self.token)
            except Exception as exc:  # it expires on its own
                log.warning("run %s: releasing its lease in %s failed (%s: %s); it expires in %.0f s",
                            self.run_id, self.where, type(exc).__name__, exc, self.settings.ttl)
        self.lease = None


# -- one keeper for many claims -----------------------------------------------------------------


class LeaseKeeper:
    """Renews the leases of many runs from one task: a serving host's runs use it instead of a
    renewal task (and a task group) of their own each.

    A run holds its lease as before (claimed, fenced, released when it ends): the keeper only
    renews it, every ``renew_every`` seconds of its own settings, from :meth:`run`'s task. A
    renewal that finds the lease lost cancels the run's scope, as the run's own keeper would;
    each renewal is a task of its own, so a store that hangs on one run's renewal delays no
    other run's. A run that lasts less than one renewal interval (most) costs one dict entry.
    """

    def __init__(self) -> None:
        self._due: dict[Ownership, float] = {}  # held -> monotonic time of its next renewal
        self._wake: anyio.Event | None = None
        self._next = math.inf  # when run() looks again
        self._thread: int | None = None

    def hold(self, own: Ownership) -> None:
        """Renew ``own``'s lease from now on, first in ``renew_every`` seconds."""
        due = time.monotonic() + own.settings.renew_every
        self._due[own] = due
        if due < self._next and self._wake is not None:
            self._wake.set()

    def drop(self, own: Ownership) -> None:
        """Renew ``own``'s lease no more (its run ended; it releases the lease itself)."""
        self._due.pop(own, None)

    def usable(self) -> bool:
        """Whether :meth:`run` goes on in this thread (so on the event loop of the runs here)."""
        return self._thread == threading.get_ident()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: renew every lease that is due (``task_status.started()`` once it does)."""
        self._thread = threading.get_ident()
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while True:
                    now = time.monotonic()
                    for own, due in list(self._due.items()):
                        if due <= now:
                            self._due[own] = math.inf  # being renewed
                            tg.start_soon(self._renew, own)
                    self._next = min(self._due.values(), default=math.inf)
                    self._wake = anyio.Event()
                    with anyio.move_on_after(self._next - now):
                        await self._wake.wait()
        finally:
            self._thread = None
            self._wake = None

    async def _renew(self, own: Ownership) -> None:
        next_in = await own.renew(still_held=lambda: own in self._due)
        if own not in self._due:
            return  # its run ended meanwhile
        if next_in is None:
            del self._due[own]
            return
        due = time.monotonic() + next_in
        self._due[own] = due
        if due < self._next and self._wake is not None:
            self._wake.set()


#: The keeper renewing the leases of runs started in this context (a serving host's runs).
_keeper: contextvars.ContextVar[LeaseKeeper | None] = contextvars.ContextVar("pyagent_lease_keeper", default=None)


def current_keeper() -> LeaseKeeper | None:
    """The keeper of the runs started here (None: each run renews its own lease)."""
    keeper = _keeper.get()
    return keeper if keeper is not None and keeper.usable() else None


@contextlib.contextmanager
def kept_by(keeper: LeaseKeeper | None) -> Iterator[None]:
    """Runs started in the block have their leases renewed by ``keeper``."""
    token = _keeper.set(keeper)
    try:
        yield
    finally:
        _keeper.reset(token)
