"""Fixtures: the tiny model family (built once per session) and an executor over it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.tiny_models import TinyModels, tiny_env, tiny_manager, tiny_models

__all__ = ["tiny_env", "tiny_manager", "tiny_models"]


@pytest.fixture
def run_workflow(tiny_env: TinyModels, tiny_manager: Any) -> Any:
    """Run a workflow's `nodes` dict on the tiny models; returns the RunResult (values kept)."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    executor = Executor(load_plugins(entry_points=False), services={"models": tiny_manager})

    def run(nodes: dict[str, Any], targets: list[str], **kwargs: Any) -> Any:
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return executor.run(workflow, targets=targets, keep_values=True, **kwargs)

    run.executor = executor  # type: ignore[attr-defined]
    return run
