"""Run-level policy settings: circuit breaker and checkpointing (validated when a workflow is built)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_EVERY = re.compile(r"^every_(\d+(?:\.\d+)?)_?(second|seconds|minute|minutes|hour|hours)$")
_UNIT = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}


class CircuitBreakerConfig(BaseModel):
    """Open after ``failure_threshold`` consecutive failed runs; after ``reset_timeout`` seconds let
    ``half_open_requests`` trial runs through.

    ``shared``: keep the breaker's state in a store, so every process running the workflow
    (``pyagent serve`` replicas) counts failures together, finds it open when one opened it and
    lets ``half_open_requests`` trials through in all (off: one breaker per process).
    ``storage``: the store URL it is shared through (default: the workflow's checkpoint
    storage, else the store its orchestrator serves with). ``store_timeout``: how long a run
    waits for the store before it falls back to this process's own breaker. ``trial_timeout``:
    a shared trial run that has not reported within this many seconds is given up (its process
    may have died) and its slot goes to the next run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: float = Field(default=60.0, gt=0)
    half_open_requests: int = Field(default=1, ge=1)
    shared: bool = False
    storage: str | None = None
    store_timeout: float = Field(default=5.0, gt=0)
    trial_timeout: float = Field(default=300.0, gt=0)

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value and ":" not in value:
            raise ValueError(
                f"storage {value!r} is not a URL: use e.g. 'postgresql://user@host/db', "
                "'sqlite://runs.db' or 'memory://'"
            )
        return value

    @model_validator(mode="after")
    def _storage_needs_shared(self) -> CircuitBreakerConfig:
        if self.storage is not None and not self.shared:
            raise ValueError(
                "storage is the store a shared breaker is kept in: add shared=True "
                "(or drop storage for a breaker of this process alone)"
            )
        return self


class CheckpointConfig(BaseModel):
    """When and where a run's progress is saved.

    ``interval``: ``"after_each_task"``, ``"every_5_minutes"``-style text, or seconds.
    ``storage``: a store URL (``sqlite://checkpoints.db``, ``postgresql://...``, ``memory://``).
    ``retention``: keep the last N checkpoints per run (None keeps all).
    ``lease_seconds``: how long a run's claim in the store lasts unless its owner renews it
    (after a crash elsewhere, the run can be taken over that long after its owner's last
    renewal); ``lease_renew_seconds``: how often the owner renews it (default a third of it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    interval: str | float = "after_each_task"
    storage: str = "memory://"
    retention: int | None = Field(default=None, ge=1)
    lease_seconds: float = Field(default=15.0, gt=0)
    lease_renew_seconds: float | None = Field(default=None, gt=0)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        if isinstance(value, (int, float)):
            if value <= 0:
                raise ValueError(f"interval must be a positive number of seconds, got {value}")
            return float(value)
        if value == "after_each_task" or _EVERY.match(value):
            return value
        raise ValueError(
            f"interval {value!r} is not valid: use 'after_each_task', 'every_5_minutes' "
            "(every_<N>_seconds|minutes|hours) or a number of seconds"
        )

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if "://" not in value and ":" not in value:
            raise ValueError(
                f"storage {value!r} is not a URL: use e.g. 'sqlite://checkpoints.db', "
                "'postgresql://user@host/db' or 'memory://'"
            )
        return value

    @model_validator(mode="after")
    def _renew_within_lease(self) -> CheckpointConfig:
        if self.lease_renew_seconds is not None and self.lease_renew_seconds >= self.lease_seconds:
            raise ValueError(
                f"lease_renew_seconds ({self.lease_renew_seconds:g}) must be shorter than "
                f"lease_seconds ({self.lease_seconds:g}), or the lease runs out between renewals: "
                "a third of the lease is a good choice"
            )
        return self

    @property
    def renew_every(self) -> float:
        """Seconds between two renewals of the run's lease."""
        return self.lease_renew_seconds if self.lease_renew_seconds is not None else self.lease_seconds / 3

    @property
    def interval_seconds(self) -> float | None:
        """None for after_each_task, else the period in seconds."""
        if isinstance(self.interval, float):
            return self.interval
        m = _EVERY.match(self.interval)
        if m is None:
            return None
        return float(m.group(1)) * _UNIT[m.group(2)]
