"""The errors of the dask executor: each names the scheduler, the task and the fix."""

from __future__ import annotations

from pyagent.plugin import DriverLoadFailure, PyAgentError


class DaskConnectionError(DriverLoadFailure):
    """The Dask scheduler could not be reached (or a local cluster could not start) in time.

    Raised by ``start()``, so by ``workflow.run()`` before any task runs: nothing ran.
    """

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class WorkerLostError(PyAgentError, ConnectionError):
    """The Dask worker running an attempt died (killed, out of memory, its machine lost).

    The attempt failed; whether the task is tried again is the task's ``retry_config``'s
    decision, as for any error (Dask itself is told not to re-run it).
    """

    retryable = True


class PayloadError(PyAgentError, TypeError):
    """An agent, its input or its context cannot be sent to a worker (or its answer back).

    Trying again cannot help, so the task's retry policy does not retry it.
    """

    retryable = False


class RemoteTraceback(Exception):
    """The traceback of an error raised on a worker, as text: the ``__cause__`` of that error.

    Printing the error (or ``traceback.format_exception``) shows the worker's frames under
    "The above exception was the direct cause of the following exception".
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text
