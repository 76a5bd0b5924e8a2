"""A small order service for ``pyagent serve``: the same file on a laptop and on a cluster.

- ``orders`` (a graph: validate, then the stock and credit checks side by side, then quote and
  confirm) runs for every ``POST /orders``; an ``Idempotency-Key`` header maps retries of one
  request to one run, whichever replica they reach.
- ``restock`` (two steps, in sequence) runs on a cron schedule, once per tick across replicas.

Nothing here names a machine. On a laptop:

    pyagent serve flows.py                       # local executor, runs in sqlite://runs.db

On a cluster, configuration alone moves it (a ``pyagent.toml`` next to it, see the README):
the ``dask`` executor with ``dask_address``, a PostgreSQL ``storage`` shared by every replica.
"""

from __future__ import annotations

import os

from shop import check_credit, check_stock, confirm, count_recent, quote, restock_report, validate

from pyagent.config import get_settings
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow

validate_task = Task(name="validate", agent=validate)
stock_task = Task(name="check_stock", agent=check_stock, dependencies=[validate_task],
                  retry_config=RetryConfig(max_retries=2, initial_delay=0.2))
credit_task = Task(name="check_credit", agent=check_credit, dependencies=[validate_task],
                   retry_config=RetryConfig(max_retries=2, initial_delay=0.2))
quote_task = Task(name="quote", agent=quote, dependencies=[stock_task, credit_task])
confirm_task = Task(name="confirm", agent=confirm, dependencies=[quote_task])

orders = Workflow(
    name="orders",
    steps=[validate_task, stock_task, credit_task, quote_task, confirm_task],
    # Every replica counts failures into one breaker (kept in the store they share).
    circuit_breaker={"failure_threshold": 5, "reset_timeout": 30, "shared": True},
)

restock = Workflow(
    name="restock",
    steps=[Task(name="count", agent=count_recent), Task(name="report", agent=restock_report)],
)

# The store every replica records runs in: the ``storage`` setting (pyagent.toml, or
# PYAGENT_STORAGE), else a SQLite file next to where it is served; ``--storage`` overrides both.
orchestrator = Orchestrator(store=get_settings().storage or "sqlite://runs.db")
# With ORDERS_TOKEN set, POST /orders (and its runs' status) needs "Authorization: Bearer <token>".
token = os.environ.get("ORDERS_TOKEN")
orchestrator.on_webhook("/orders", workflow=orders, **({"secret": token, "auth": "bearer"} if token else {}))
orchestrator.schedule(restock, cron="*/5 * * * *", name="restock")  # every five minutes, UTC
