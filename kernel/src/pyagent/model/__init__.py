"""The data model, the kernel's bottom layer: agents, tasks, the run context, results, events, policies.

Nothing here imports the engine, durability or the workflow layers above it.
"""
