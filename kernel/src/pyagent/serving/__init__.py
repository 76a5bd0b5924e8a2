"""Serving triggers: what ``orchestrator.serve()`` and ``pyagent serve`` run.

A :class:`TriggerHost` is the running side of an orchestrator: it records each triggered run
in the store before starting it (so an accepted request or a fired tick is never lost),
starts it under a bound on concurrent runs, resumes runs a dead process left behind, serves
every trigger (cron schedules, webhook servers), and on shutdown stops accepting, lets
in-flight runs finish within a grace period and checkpoints the rest for the next start.
"""

from __future__ import annotations

from pyagent.serving.host import Submission, TriggerHost

__all__ = ["Submission", "TriggerHost"]
