"""The ``dask`` executor: each agent call is one Dask task on a ``dask.distributed`` cluster.

Only the call moves: the task's retries, timeout, fallback, guardrails and the workflow's
circuit breaker stay in the kernel, on the caller, so attempts are recorded exactly as with the
local executor. Dask is told never to re-run a task itself (``retries=0``, and for a cluster
this executor starts, ``allowed_failures=0``): a worker that dies mid-call fails that attempt
with :class:`WorkerLostError`, and the task's ``retry_config`` decides what happens next.

Importing this module is cheap: ``distributed`` is imported when the executor starts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.plugin import ConfigurationError, PyAgentError, RunContext
from pyagent_dask.bridge import Mailbox, current_mailbox
from pyagent_dask.errors import DaskConnectionError, WorkerLostError
from pyagent_dask.payload import RunCache, build_call, settle
from pyagent_dask.remote import Outcome, run_async, run_threaded, runs_in_thread

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger("pyagent.dask")

OPTIONS = ("address", "connect_timeout", "n_workers", "threads_per_worker", "processes",
           "scatter_threshold", "check_resources", "direct_to_workers", "cluster_options")


class DaskExecutor:
    """Runs agent calls on a Dask cluster: the one at ``address``, or a local one it starts.

    Options (``Workflow(executor_options=...)``, ``[tool.pyagent.executors.dask]``):

    - ``address``: the scheduler, ``tcp://scheduler:8786`` (also the ``dask_address``
      setting). Without it a ``LocalCluster`` is started on 127.0.0.1 with no dashboard,
      and closed with the orchestrator (``Orchestrator.aclose()``) or at exit.
    - ``connect_timeout``: seconds to reach the scheduler (or start the local cluster)
      before failing with :class:`DaskConnectionError` naming the address (default 10).
    - ``n_workers``, ``threads_per_worker``, ``processes`` (default True) and
      ``cluster_options`` (any other ``LocalCluster`` argument): the local cluster.
    - ``scatter_threshold``: values of at least this many bytes (by ``dask.sizeof``) among a
      call's input, previous results and state are scattered once per run and passed by key
      (default 256 KiB).
    - ``check_resources``: refuse a task whose ``resources`` no worker has, rather than let
      it wait for one (default True; turn it off for clusters that add such workers on demand).
    - ``direct_to_workers``: fetch results from the workers rather than through the
      scheduler (default: yes for the local cluster, Dask's choice for an address).
    """

    name = "dask"
    inline = False
    supports_resources = True

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} for the dask executor: valid are {', '.join(OPTIONS)}"
            )
        self.address: str | None = options.get("address")
        if self.address is not None and not (isinstance(self.address, str) and self.address.strip()):
            raise ConfigurationError(f"address must be a scheduler address like 'tcp://scheduler:8786', got {self.address!r}")
        self.connect_timeout = _positive(options.get("connect_timeout", 10.0), "connect_timeout")
        self.scatter_threshold = int(_positive(options.get("scatter_threshold", 256 * 1024), "scatter_threshold"))
        self.check_resources = bool(options.get("check_resources", True))
        self.direct_to_workers: bool | None = options.get("direct_to_workers")
        self._direct: bool | None = None
        cluster_options = dict(options.get("cluster_options") or {})
        for name in ("n_workers", "threads_per_worker", "processes"):
            if options.get(name) is not None:
                cluster_options[name] = options[name]
        self.cluster_options = cluster_options
        self._client: Client | None = None
        self._cluster: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mailbox: Mailbox = Mailbox(_not_started, quiet=False)
        self._lock = threading.Lock()
        # Dask keys: unique per process and executor without a uuid4 per call (os.urandom can
        # cost hundreds of microseconds on a virtual machine).
        self._key_prefix = uuid.uuid4().hex[:12] + "-"
        self._key_numbers = itertools.count(1)
        self._runs: weakref.WeakKeyDictionary[Any, RunCache] = weakref.WeakKeyDictionary()
        # Counters and the keys of cancelled futures (sent_bytes: pickled calls, without the
        # scattered values), for tests and diagnostics.
        self.stats = {"submitted": 0, "scattered": 0, "cancelled": 0, "workers_lost": 0, "sent_bytes": 0}
        self.cancelled_keys: deque[str] = deque(maxlen=1000)

    def __repr__(self) -> str:
        where = self.address or ("local cluster " + self.scheduler_address if self._cluster else "local cluster")
        return f"DaskExecutor({where})"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The ``distributed.Client`` (a synchronous client on its own loop thread)."""
        if self._client is None:
            raise PyAgentError("the dask executor is not started: await executor.start() (a run starts it)")
        return self._client

    @property
    def cluster(self) -> Any:
        """The ``LocalCluster`` this executor started, or None when it connected to an address."""
        return self._cluster

    @property
    def scheduler_address(self) -> str:
        return str(self.client.scheduler.address) if self._client is not None else (self.address or "")

    async def start(self) -> None:
        """Connect to the scheduler, or start the local cluster; a no-op once started.

        The kernel calls it before each run that uses this executor, so an unreachable
        scheduler fails the run before any task starts.
        """
        if self._client is None:
            await anyio.to_thread.run_sync(self._start_blocking)

    def _start_blocking(self) -> None:
        with self._lock:
            if self._client is not None:
                return
            from distributed import Client

            cluster = None
            if self.address is None:
                cluster = self._local_cluster()
                client = Client(cluster, set_as_default=False, timeout=self.connect_timeout)
            else:
                try:
                    client = Client(self.address, set_as_default=False, timeout=self.connect_timeout)
                except (OSError, TimeoutError) as exc:
                    raise DaskConnectionError(
                        f"could not reach the Dask scheduler at {self.address} within "
                        f"{self.connect_timeout:g}s ({type(exc).__name__}: {exc}): check that the scheduler "
                        "is running and reachable, and the address given as dask_address ([tool.pyagent] or "
                        "PYAGENT_DASK_ADDRESS) or executor_options={'address': ...}",
                        address=self.address,
                    ) from None
                _warn_if_dask_retries(client, self.address)
            self._cluster = cluster
            # Results straight from the workers when they are reachable for sure (a local
            # cluster, or when asked), else as Dask's client decides (through the scheduler).
            self._direct = True if cluster is not None else self.direct_to_workers
            self._loop = client.loop.asyncio_loop  # type: ignore[attr-defined]
            self._mailbox = Mailbox(self._loop.call_soon_threadsafe, quiet=False)
            self._client = client

    def _local_cluster(self) -> Any:
        from distributed import LocalCluster

        options: dict[str, Any] = {"host": "127.0.0.1", "dashboard_address": None, "processes": True,
                                   **self.cluster_options}
        scheduler = dict(options.pop("scheduler_kwargs", None) or {})
        scheduler.setdefault("allowed_failures", 0)  # a dead worker fails the attempt: the kernel retries
        if options["dashboard_address"] is None:
            # No dashboard; the scheduler's small HTTP server (health, metrics) still starts,
            # so on an ephemeral port of 127.0.0.1 rather than Dask's default 8787.
            scheduler.setdefault("dashboard", False)
            scheduler.setdefault("dashboard_address", "127.0.0.1:0")
        try:
            return LocalCluster(scheduler_kwargs=scheduler, **options)
        except Exception as exc:
            raise DaskConnectionError(
                f"could not start a local Dask cluster ({type(exc).__name__}: {exc}): check "
                "executor_options / [tool.pyagent.executors.dask] (n_workers, threads_per_worker, "
                "cluster_options), or give dask_address to use a running scheduler"
            ) from exc

    async def close(self) -> None:
        """Close the client and the local cluster this executor started (its worker processes
        end); a later ``start()`` opens them again."""
        if self._client is not None:
            await anyio.to_thread.run_sync(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = self._loop = None
            self._runs = weakref.WeakKeyDictionary()
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()

    # -- calls -------------------------------------------------------------------------------

    def call(self, agent: Any, input: Any, ctx: RunContext) -> Any:
        return self._call(agent, input, ctx)

    async def _call(self, agent: Any, input: Any, ctx: RunContext) -> Any:
        if self._client is None:
            await self.start()
        cache = self._cache(ctx.run)
        call, large = build_call(agent, input, ctx, cache, self.scatter_threshold)
        task = ctx.task
        resources = task.resources if task is not None else None
        label = task.name if task is not None else getattr(agent, "name", "agent")
        key = f"pyagent-{label}-{ctx.attempt}-{self._key_prefix}{next(self._key_numbers)}"
        fn = run_threaded if runs_in_thread(agent) else run_async
        self.stats["sent_bytes"] += sum(len(part) for part in call if part is not None)
        done = anyio.Event()
        handle = _Handle(current_mailbox(), done.set)
        scattered = cache.remote if cache is not None else {}
        self._mailbox.post(lambda: self._start_remote(handle, fn, call, large, scattered, resources, key, label))
        try:
            await done.wait()
        except BaseException:
            # A timeout or a cancelled run: cancel the Dask future too, and wait (briefly) until
            # it is, so the task ends with nothing of it left running on the cluster.
            self._mailbox.post(lambda: self._abort(handle))
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT):
                await done.wait()
            raise
        if handle.error is not None:
            raise handle.error
        assert handle.outcome is not None
        return settle(handle.outcome, ctx)

    def _cache(self, run: Any) -> RunCache | None:
        if run is None:
            return None
        cache = self._runs.get(run)
        if cache is None:
            cache = self._runs.setdefault(run, RunCache())
        return cache

    # -- on the client's loop thread -----------------------------------------------------------

    def _start_remote(self, handle: _Handle, *args: Any) -> None:
        task = asyncio.ensure_future(self._remote(handle, *args))
        handle.task = task
        task.add_done_callback(lambda _: self._finished(handle, task))

    def _finished(self, handle: _Handle, task: asyncio.Task[Outcome]) -> None:
        """Hand the outcome (or the error) back to the caller's loop."""
        if task.cancelled():
            handle.error = asyncio.CancelledError()
        elif task.exception() is not None:
            handle.error = task.exception()
        else:
            handle.outcome = task.result()
        handle.mailbox.post(handle.wake)

    async def _remote(self, handle: _Handle, fn: Any, call: list[Any], large: list[Any], scattered: dict[Any, Any],
                      resources: dict[str, float] | None, key: str, label: str) -> Outcome:
        client = self.client
        args = [await self._scatter(value, scattered) for value in large]
        if resources and self.check_resources:
            await self._check_resources(resources, scattered, label)
        if handle.aborted:
            raise asyncio.CancelledError
        future = handle.future = client.submit(fn, key, *call, *args, key=key, pure=False, resources=resources,
                                               retries=0)
        self.stats["submitted"] += 1
        try:
            outcome: Outcome = await client.gather(future, direct=self._direct, asynchronous=True)
            return outcome
        except Exception as exc:
            if handle.aborted:
                raise asyncio.CancelledError from None
            raise self._infrastructure_error(exc, label, future) from None

    def _abort(self, handle: _Handle) -> None:
        """Cancel a call whose caller gave up: its Dask future, or its submission if not made yet.

        Cancelling the future (rather than the coroutine waiting for it) lets Dask's gather
        end by itself.
        """
        handle.aborted = True
        future = handle.future
        if future is None:
            return
        self.stats["cancelled"] += 1
        self.cancelled_keys.append(str(future.key))
        cancel = self.client.cancel([future], asynchronous=True)
        handle.cancelling = asyncio.ensure_future(cancel)

    def _infrastructure_error(self, exc: Exception, label: str, future: Future) -> Exception:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            self.stats["workers_lost"] += 1
            worker = getattr(getattr(exc, "last_worker", None), "address", None) or "?"
            return WorkerLostError(
                f"task '{label}': the Dask worker {worker} running this attempt died "
                f"(Dask key {future.key}); the task's retry_config decides whether it runs again"
            )
        if isinstance(exc, FutureCancelledError):
            return PyAgentError(
                f"task '{label}': its Dask future {future.key} was cancelled outside the run "
                f"(the client or the cluster closed, or it was cancelled on the scheduler): {exc}"
            )
        return exc

    async def _scatter(self, value: Any, scattered: dict[Any, Any]) -> Future:
        """The Dask future of ``value``: scattered on first use in a run, then reused by key."""
        entry = scattered.get(id(value))
        if entry is None:
            pending = asyncio.ensure_future(self.client.scatter([value], hash=False, asynchronous=True))
            entry = (value, pending)  # the value is kept so its id is not reused
            scattered[id(value)] = entry
            self.stats["scattered"] += 1
        futures = await asyncio.shield(entry[1])
        return futures[0]  # type: ignore[no-any-return]

    async def _check_resources(self, resources: dict[str, float], seen: dict[Any, Any], label: str) -> None:
        wanted = ("resources", tuple(sorted(resources.items())))
        if wanted in seen:
            return
        info = await self.client.scheduler.identity(n_workers=-1)
        workers = info.get("workers", {})
        if not any(all(w.get("resources", {}).get(r, 0) >= n for r, n in resources.items())
                   for w in workers.values()):
            have = sorted({f"{r}={n:g}" for w in workers.values() for r, n in w.get("resources", {}).items()})
            raise PyAgentError(
                f"task '{label}' asks for resources {resources} but none of the {len(workers)} worker(s) "
                f"of the Dask cluster at {self.scheduler_address} has them (resources there: "
                f"{', '.join(have) or 'none'}): start workers with --resources \"GPU=1\", or pass "
                "check_resources=False if workers with them are added on demand"
            )
        seen[wanted] = True


def _not_started(callback: Any) -> None:
    raise RuntimeError("the dask executor is not started")


# How long a cancelled call waits for its Dask future to be cancelled before it lets go.
_CANCEL_WAIT = 5.0


class _Handle:
    """One call, shared by the caller (which may abort it) and the client's loop (which runs it)."""

    __slots__ = ("aborted", "cancelling", "error", "future", "mailbox", "outcome", "task", "wake")

    def __init__(self, mailbox: Mailbox, wake: Any) -> None:
        self.mailbox = mailbox  # the caller's loop, where ``wake`` is called when the call ends
        self.wake = wake
        self.future: Future | None = None
        self.task: asyncio.Task[Outcome] | None = None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.aborted = False
        self.cancelling: Any = None  # the cancel request in flight (kept so it is not collected)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _warn_if_dask_retries(client: Client, address: str) -> None:
    """Warn when the scheduler re-runs tasks whose worker died: the kernel's retries should decide."""
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
    except Exception:  # the scheduler may refuse to run functions; then we cannot tell
        return
    if allowed:
        log.warning(
            "the Dask scheduler at %s re-runs a task whose worker died up to %s time(s) before "
            "failing it (distributed.scheduler.allowed-failures): an agent call may then run twice; "
            "start the scheduler with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 so the task's "
            "retry_config decides", address, allowed)


def _allowed_failures(dask_scheduler: Any = None) -> int:
    return int(dask_scheduler.allowed_failures)
