"""Every exception pyagent raises on purpose.

Each message says what is wrong and how to fix it; callers should never have to read a
traceback to learn which setting was bad.
"""

from __future__ import annotations


class PyAgentError(Exception):
    """Base class of every pyagent error."""


class ConfigurationError(PyAgentError, ValueError):
    """A workflow, task or setting is invalid; raised before any agent runs."""


class PluginNotInstalledError(PyAgentError, LookupError):
    """A pattern, router, store, executor, trigger or model is named but no plugin provides it."""

    def __init__(self, kind: str, name: str, distribution: str | None, available: list[str]):
        self.kind = kind
        self.name = name
        self.distribution = distribution
        self.available = available
        if distribution:
            fix = f"pip install {distribution}"
        else:
            fix = f"install a plugin that provides the {kind} '{name}'"
        have = ", ".join(sorted(available)) or "none"
        super().__init__(f"{kind} '{name}' is not installed: {fix} (installed {kind}s: {have})")


class PluginLoadError(PyAgentError, ImportError):
    """A plugin failed to import while PYAGENT_STRICT_PLUGINS=1 was set."""


class DriverLoadFailure(PyAgentError, RuntimeError):
    """A store or executor driver was found but could not be loaded or started."""


class ModelNotConfiguredError(PyAgentError, RuntimeError):
    """An instruction (LLM) agent ran without any language model to call."""


class TaskFailedError(PyAgentError):
    """A task failed after its retries and fallback; carries the task name and the cause."""

    def __init__(self, task: str, error: BaseException):
        self.task = task
        self.error = error
        super().__init__(f"task '{task}' failed: {type(error).__name__}: {error}")


class CircuitOpenError(PyAgentError):
    """The workflow's circuit breaker is open; the run was refused without calling any agent."""


class HandoffLoopError(PyAgentError):
    """A chain of handoffs went past its hop limit."""


class CheckpointConflictError(PyAgentError, ValueError):
    """A checkpoint with the same run id and sequence number is already stored (two writers on one run)."""


class StateError(PyAgentError, ValueError):
    """A saved state or checkpoint is corrupt, truncated, of another version or workflow."""


class NotAcceptingError(PyAgentError, RuntimeError):
    """The orchestrator is shutting down (or not serving) and starts no new triggered runs."""
