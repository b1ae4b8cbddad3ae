"""Fixtures: the same tiny model family and executor as the node tests."""

from tests.nodes.conftest import run_workflow, tiny_env, tiny_manager, tiny_models

__all__ = ["run_workflow", "tiny_env", "tiny_manager", "tiny_models"]
