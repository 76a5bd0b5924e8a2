"""The run engine, above the data model: one run of a workflow, task policies, task groups.

``WorkflowRun.run_step`` runs one task with its timeout, retries, fallback and events; a
pattern decides which tasks run when. Nothing here imports durability or the workflow layer.
"""

from pyagent.engine.run import Listener, WorkflowRun, check_runnable, execute, new_run_id
from pyagent.model.context import current_run

__all__ = ["Listener", "WorkflowRun", "check_runnable", "current_run", "execute", "new_run_id"]
