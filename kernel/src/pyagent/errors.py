"""Every exception pyagent raises on purpose.

Each message says what is wrong and how to fix it; callers should never have to read a
traceback to learn which setting was bad.
"""

from __future__ import annotations

from typing import Any


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


class RunCancelledError(PyAgentError):
    """The run was cancelled from outside it (``workflow.cancel(run_id)``); the message says why."""


class CheckpointConflictError(PyAgentError, ValueError):
    """A checkpoint with the same run id and sequence number is already stored (two writers on one run)."""


class StateError(PyAgentError, ValueError):
    """A saved state or checkpoint is corrupt, truncated, of another version or workflow."""


class StoreError(PyAgentError, RuntimeError):
    """A store failed while reading or writing.

    The message names the store (never its password) and the operation, and never carries
    the data being written: task outputs must not leak into ``result.error`` or logs.
    """


class RunOwnedError(PyAgentError, RuntimeError):
    """Another process owns the run: it holds the run's lease in the store.

    A run has one owner at a time. ``owner`` is the holder's owner id (``host:pid:random`` by
    default), ``expires_at`` when its lease runs out (epoch seconds) unless the owner renews
    it. Resume with ``wait=True`` to wait for the claim instead.
    """

    def __init__(self, message: str, *, run_id: str = "", owner: str | None = None,
                 expires_at: float | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields survive pickling (errors cross process boundaries in executors).
        return (type(self), (str(self),), dict(self.__dict__))


class GuardrailError(PyAgentError):
    """A guardrail blocked an agent's input or output.

    ``guardrail`` names the check, ``side`` is ``"input"`` or ``"output"``, ``reason`` says why,
    ``agent`` and ``task`` say where. A block is final: the task is not retried and its fallback
    does not run, unless ``retry`` is True (set by ``Guardrail(check, retry=True)``, or by a check
    that raises ``GuardrailError(reason, retry=True)`` itself), in which case the task's
    ``retry_config`` retries it like any other error.
    """

    def __init__(self, reason: str, *, guardrail: str = "", side: str = "", agent: str | None = None,
                 task: str | None = None, retry: bool = False) -> None:
        self.reason = reason
        self.guardrail = guardrail
        self.side = side
        self.agent = agent
        self.task = task
        self.retry = retry
        if not guardrail:  # raised by a check itself: the engine fills in the rest
            super().__init__(reason)
            return
        if task is not None:
            whose = f" of task '{task}'" + (f" (agent '{agent}')" if agent is not None else "")
        else:
            whose = f" of agent '{agent}'" if agent is not None else ""
        super().__init__(f"{side} guardrail '{guardrail}' blocked the {side}{whose}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: rebuilt from them when the error crosses a process boundary.
        return (_rebuild, (GuardrailError, (self.reason,), {
            "guardrail": self.guardrail, "side": self.side, "agent": self.agent, "task": self.task,
            "retry": self.retry}))


class CapabilityError(PyAgentError, PermissionError):
    """An agent tried to hand off, or call a tool, outside what it was granted.

    ``capability`` is ``"handoff"`` or ``"tool"``, ``target`` the agent or tool it asked for,
    ``granted`` the names its ``can_handoff_to=`` or ``tools=`` allow. ``refusal`` is a short
    text for a model that asked for a tool: the tool-call loop returns it to the model. A
    denial is final: a task's retry policy does not retry it.
    """

    def __init__(self, *, agent: str, capability: str, target: str, granted: list[str],
                 mode: str = "") -> None:
        self.agent = agent
        self.capability = capability
        self.target = target
        self.granted = granted
        self.mode = mode
        allowed = ", ".join(granted) or "none"
        if capability == "tool":
            message = (f"agent '{agent}' may not call tool '{target}': it is not in the agent's "
                       f"tools= (allowed: {allowed}); add it to tools=[...] if the agent needs it")
        else:
            message = (f"agent '{agent}' may not hand off to '{target}': it is not in the agent's "
                       f"can_handoff_to= (allowed: {allowed}); add it there if the handoff is legitimate")
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (CapabilityError, (), {
            "agent": self.agent, "capability": self.capability, "target": self.target,
            "granted": self.granted, "mode": self.mode}))

    @property
    def refusal(self) -> str:
        """What a model is told when its tool call is refused."""
        allowed = ", ".join(self.granted) or "none"
        if self.capability == "tool":
            return f"Refused: you may not call the tool '{self.target}'. Tools you may call: {allowed}."
        return f"Refused: you may not hand off to '{self.target}'. Agents you may hand off to: {allowed}."


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    return cls(*args, **kwargs)


class NotAcceptingError(PyAgentError, RuntimeError):
    """The orchestrator is shutting down (or not serving) and starts no new triggered runs."""


class InterruptError(PyAgentError):
    """An answer to a question a run asked (``ctx.interrupt``) was refused, or the question expired.

    ``run_id`` and ``interrupt_id`` say which question.
    """

    def __init__(self, message: str, *, run_id: str = "", interrupt_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.interrupt_id = interrupt_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"run_id": self.run_id, "interrupt_id": self.interrupt_id}))


class InterruptNotFoundError(InterruptError, LookupError):
    """No question with that id is pending in that run: unknown, forged, or of another run (HTTP 404)."""


class InterruptAnsweredError(InterruptError):
    """The question was already answered, expired or escalated: a replayed answer is refused (HTTP 409)."""


class AnswerValidationError(InterruptError, ValueError):
    """The answer does not match the question's schema; the run keeps waiting (HTTP 422).

    ``errors`` lists each problem as ``"<path>: <what is wrong>"``.
    """

    def __init__(self, message: str, *, run_id: str = "", interrupt_id: str = "",
                 errors: list[str] | None = None) -> None:
        super().__init__(message, run_id=run_id, interrupt_id=interrupt_id)
        self.errors = list(errors or [])

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"run_id": self.run_id, "interrupt_id": self.interrupt_id,
                                                      "errors": self.errors}))


class InterruptTimeoutError(InterruptError, TimeoutError):
    """A question timed out with ``on_timeout="fail"``: the task that asked it fails.

    Never retried (``retryable`` is False) and never handed to the task's fallback agent.
    """

    retryable = False
