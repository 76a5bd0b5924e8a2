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
    """A pattern, router, store, executor, trigger, monitor or model is named but no plugin provides it.

    ``distribution`` is the pyagent distribution that provides ``name`` (None when no
    distribution of this project does); ``suggestion`` is the installed or known name that
    ``name`` looks like a misspelling of.
    """

    def __init__(self, kind: str, name: str, distribution: str | None, available: list[str],
                 *, suggestion: str | None = None, suggestion_distribution: str | None = None):
        self.kind = kind
        self.name = name
        self.distribution = distribution
        self.available = available
        self.suggestion = suggestion
        have = f"(installed {kind}s: {', '.join(sorted(available)) or 'none'})"
        if distribution:
            message = f"{kind} '{name}' is not installed: {install_hint(distribution)} {have}"
        elif suggestion is not None:
            message = f"unknown {kind} '{name}'; did you mean '{suggestion}'?"
            if suggestion not in available and suggestion_distribution:
                message += f" (not installed either: {install_hint(suggestion_distribution)})"
            message += f" {have}"
        else:
            message = (f"unknown {kind} '{name}': no {kind} of that name is installed and no pyagent "
                       f"distribution provides one; install a plugin that registers it {have}")
        super().__init__(message)


def install_hint(distribution: str) -> str:
    """How to install one of this project's plugin distributions: by name, or from a clone."""
    folder = distribution.removeprefix("pyagent-")
    return (f"pip install {distribution} (from a clone of pyagent: pip install ./plugins/{folder}, "
            f"or build the wheels with `nox -s wheels` and pip install --find-links dist {distribution})")


class PluginLoadError(PyAgentError, ImportError):
    """A plugin failed to import while PYAGENT_STRICT_PLUGINS=1 was set."""


class DriverLoadFailure(PyAgentError, RuntimeError):
    """A store or executor driver was found but could not be loaded or started."""


class ModelNotConfiguredError(PyAgentError, RuntimeError):
    """An instruction (LLM) agent ran without any language model to call."""


class ModelError(PyAgentError, RuntimeError):
    """A language-model call failed; the message names the model, the endpoint and the fix.

    ``retryable`` says whether trying again can help (a rate limit, a server error) or not (a
    bad key, an unknown model): a task's retry policy never retries an error whose
    ``retryable`` is False. ``retry_after`` is the delay the server asked for, in seconds.
    """

    def __init__(self, message: str, *, model: str = "", endpoint: str = "", status: int | None = None,
                 retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.endpoint = endpoint
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class StructuredOutputError(ModelError):
    """A model's reply did not match the requested ``output_type``, even after one re-ask."""

    def __init__(self, message: str, *, text: str = "", model: str = "") -> None:
        super().__init__(message, model=model)
        self.text = text


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
