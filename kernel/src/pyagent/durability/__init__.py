"""Durability, above the engine: encoding, the store protocol, state files, checkpoints, history, metrics.

It wraps a run (``lifecycle.drive``) without the engine knowing about it: the engine only
calls the ``after_task`` hooks a checkpointer installs.
"""
