"""Old module paths keep importing, with a DeprecationWarning that says where the names went."""

from __future__ import annotations

import importlib
import sys

import pytest

from pyagent._compat import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_imports_the_same_objects_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}.*pyagent\.plugin"):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_")]
    assert public and all(getattr(module, n) is getattr(target, n) for n in public)


def test_names_that_left_a_module_are_still_found_under_its_old_path() -> None:
    sys.modules.pop("pyagent.durable", None)
    with pytest.warns(DeprecationWarning):
        from pyagent.durable import current_run, metrics_for, resume_state  # type: ignore[attr-defined]
    from pyagent.durability.metrics import metrics_for as now_metrics_for
    from pyagent.model.context import current_run as now_current_run
    from pyagent.runner import resume_state as now_resume_state

    assert (current_run, metrics_for, resume_state) == (now_current_run, now_metrics_for, now_resume_state)


def test_what_left_pyagent_checkpoint_is_still_found_under_its_old_path() -> None:
    # Opening stores and reading checkpoints back moved out of checkpoint.py after the move.
    sys.modules.pop("pyagent.checkpoint", None)
    with pytest.warns(DeprecationWarning):
        from pyagent.checkpoint import (  # type: ignore[attr-defined]
            fold,
            load_run,
            next_seq,
            open_store,
            store_scheme,
        )
    from pyagent.durability import replay, stores

    assert (fold, load_run, next_seq) == (replay.fold, replay.load_run, replay.next_seq)
    assert (open_store, store_scheme) == (stores.open_store, stores.store_scheme)
    assert store_scheme("postgresql+asyncpg://db") == "postgresql"


def test_pyagent_engine_is_a_package_that_still_offers_what_the_module_had() -> None:
    from pyagent.engine import (
        Listener,
        WorkflowRun,
        check_runnable,
        current_run,
        execute,
        new_run_id,
    )
    from pyagent.engine.run import Listener as RunListener
    from pyagent.engine.run import WorkflowRun as Run

    assert WorkflowRun is Run and callable(check_runnable) and callable(current_run)
    assert callable(execute) and callable(new_run_id) and Listener is RunListener


def test_the_plugin_api_resolves_every_name() -> None:
    import pyagent.plugin as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing
