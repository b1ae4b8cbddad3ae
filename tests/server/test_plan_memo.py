"""An identical submission reuses its validated plan (plan_memo.py); a workflow whose
validation reads files (discovered choices, uploads) is validated on every submission."""

from __future__ import annotations

from typing import Any

import pytest

from easel.server.plan_memo import PlanMemo, pure
from easel.server.state import STATE
from tests.server.conftest import echo, submit, wait_run, workflow


@pytest.mark.asyncio
async def test_identical_submission_is_validated_once(client: Any, monkeypatch: Any) -> None:
    st = client.server.app[STATE]
    calls: list[Any] = []
    original = st.executor.validate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(st.executor, "validate", counting)
    first = await submit(client, echo(3))
    second = await submit(client, echo(3))
    assert len(calls) == 1
    for run_id in (first, second):
        run = await wait_run(client, run_id)
        assert run["status"] == "succeeded", run
    await submit(client, echo(4))  # another value: validated
    assert len(calls) == 2


@pytest.mark.asyncio
async def test_a_memoised_workflow_still_gets_its_own_run(client: Any) -> None:
    ids = {await submit(client, echo(7)) for _ in range(3)}
    assert len(ids) == 3
    for run_id in ids:
        assert (await wait_run(client, run_id))["status"] == "succeeded"


@pytest.mark.asyncio
async def test_workflows_reading_files_are_validated_every_time(client: Any) -> None:
    """LoadImage's upload may vanish between submissions: never memoised."""
    body = workflow({"load": {"type": "LoadImage", "inputs": {"image": "gone.png"}}})
    for _ in range(2):
        response = await client.post("/api/runs", json={"workflow": body})
        assert response.status == 400
        assert "gone.png" in (await response.text())


def test_purity_of_node_types(registry: Any) -> None:
    assert pure(registry.get("Int"))
    assert not pure(registry.get("CheckpointLoader"))  # discovered checkpoint names
    assert not pure(registry.get("LoadImage"))


def test_memo_keeps_the_newest(registry: Any) -> None:
    from easel.core.executor import Executor

    memo = PlanMemo(kept=2)
    executor = Executor(registry)
    keys = []
    for value in range(3):
        wf = echo(value)
        key = memo.key(wf)
        memo.put(key, wf, executor.validate(wf), b"plan")
        keys.append(key)
    assert memo.get(keys[0]) is None
    assert memo.get(keys[2]) == (echo(2), b"plan")
