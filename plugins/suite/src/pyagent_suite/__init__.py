"""The pyagent suite: a meta-distribution that installs the kernel and every default plugin.

``python -m pyagent_suite`` checks that each of them is installed and discovered.
"""

from __future__ import annotations

# (registry kind, name) -> the distribution that provides it
DEFAULTS: dict[tuple[str, str], str] = {
    ("patterns", "sequential"): "pyagent-sequential",
    ("patterns", "parallel"): "pyagent-parallel",
    ("patterns", "graph"): "pyagent-graph",
    ("patterns", "supervisor"): "pyagent-supervisor",
    ("patterns", "consensus"): "pyagent-consensus",
    ("patterns", "debate"): "pyagent-debate",
    ("patterns", "chain_of_thought"): "pyagent-reasoning",
    ("patterns", "handoff_team"): "pyagent-handoffs",
    ("patterns", "handoff_chain"): "pyagent-handoffs",
    ("routers", "keyword"): "pyagent-keyword-router",
    ("stores", "sqlite"): "pyagent-sql",
    ("stores", "postgresql"): "pyagent-sql",
    ("triggers", "cron"): "pyagent-cron",
    ("triggers", "webhook"): "pyagent-webhooks",
}


def missing() -> list[str]:
    """The default features that are not installed or failed to load, as 'kind name (distribution)'."""
    from pyagent.plugin import get_runtime

    rt = get_runtime()
    out = []
    for (kind, name), dist in DEFAULTS.items():
        if kind == "stores":
            found = name in rt.driver_names("stores") or name in rt.registry("stores")
        else:
            found = name in rt.registry(kind)
        if not found:
            out.append(f"{kind[:-1]} {name} ({dist})")
    return out
