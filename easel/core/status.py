"""The one vocabulary of run and node states, shared by the executor, CLI, batches and server.

Both are `StrEnum`s: a member equals its string ("succeeded"), so JSON and SQLite keep plain
words while code names them once.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands: queued and running in the server, then one of the final three."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class NodeStatus(StrEnum):
    """What happened to one node of a run."""

    PENDING = "pending"
    RUNNING = "running"
    EXECUTED = "executed"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream node failed
    CANCELLED = "cancelled"
    UNUSED = "unused"  # fed only lazy inputs that no node asked for

    @property
    def has_outputs(self) -> bool:
        return self in (NodeStatus.EXECUTED, NodeStatus.CACHED)
