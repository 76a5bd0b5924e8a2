"""pyagent-dask: the ``dask`` executor, agents run on a ``dask.distributed`` cluster.

Pick it with ``Workflow(executor="dask")``, ``Task(executor="dask")`` or in configuration
(``[tool.pyagent] executor = "dask"``, ``dask_address = "tcp://scheduler:8786"``); without an
address it starts a local cluster. See docs/plugins/dask.md.

Light to import: ``distributed`` is imported when the executor starts.
"""

from __future__ import annotations

from pyagent_dask.errors import DaskConnectionError, PayloadError, RemoteTraceback, WorkerLostError
from pyagent_dask.executor import DaskExecutor

__all__ = ["DaskConnectionError", "DaskExecutor", "PayloadError", "RemoteTraceback", "WorkerLostError"]
