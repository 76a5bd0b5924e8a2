"""The agents of the cluster example: plain functions in a module of their own.

On a cluster the ``dask`` executor sends each agent call to a worker process, and agents
defined in an importable module travel by reference: the workers import this module (the
image puts it on their ``PYTHONPATH``) instead of receiving its code. On a laptop they simply
run in the serving process.
"""

from __future__ import annotations

import os
from typing import Any

PRICES = {"widget": 4.5, "gadget": 12.0, "gizmo": 30.0}
STOCK = {"widget": 1000, "gadget": 40, "gizmo": 3}


def validate(order: dict[str, Any]) -> dict[str, Any]:
    """Refuse malformed orders before anything else runs (the run fails, nothing is charged)."""
    items = order.get("items")
    if not isinstance(items, dict) or not items:
        raise ValueError("an order needs items: {'items': {'widget': 2}}")
    unknown = sorted(set(items) - set(PRICES))
    if unknown:
        raise ValueError(f"unknown items: {', '.join(unknown)}")
    return {"customer": str(order.get("customer", "anonymous")), "items": dict(items)}


def check_stock(order: dict[str, Any]) -> dict[str, Any]:
    short = {item: n - STOCK[item] for item, n in order["items"].items() if n > STOCK[item]}
    return {"in_stock": not short, "short": short, "worker": os.getpid()}


def check_credit(order: dict[str, Any]) -> dict[str, Any]:
    total = sum(PRICES[item] * n for item, n in order["items"].items())
    return {"approved": total <= 500, "total": round(total, 2), "worker": os.getpid()}


def quote(checks: dict[str, Any]) -> dict[str, Any]:
    """Joins both checks (a graph task with two dependencies gets their outputs by name)."""
    stock, credit = checks["check_stock"], checks["check_credit"]
    status = "accepted" if stock["in_stock"] and credit["approved"] else "held"
    return {"status": status, "total": credit["total"], "short": stock["short"]}


def confirm(quoted: dict[str, Any]) -> str:
    if quoted["status"] == "accepted":
        return f"order accepted: {quoted['total']:.2f} EUR"
    return f"order held: short {quoted['short']} or over the credit limit"


def count_recent(_: Any) -> dict[str, int]:
    """The scheduled report's first step (a real report would query the order system)."""
    return {"widget": STOCK["widget"], "gadget": STOCK["gadget"], "gizmo": STOCK["gizmo"]}


def restock_report(stock: dict[str, int]) -> str:
    low = sorted(item for item, n in stock.items() if n < 10)
    return "restock: " + (", ".join(low) if low else "nothing")
