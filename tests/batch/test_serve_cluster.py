"""`easel serve --cluster`: queued runs execute on Dask workers; events and files come back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from easel.batch.runner import RunnerConfig
from easel.server import ServerConfig, create_app
from tests.batch.conftest import dask_client
from tests.server.conftest import slow_save, submit, wait_run, workflow

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = str(ROOT / "tests" / "server" / "testnodes.py")
pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def cluster():
    with dask_client(1) as dask:
        yield dask


@pytest_asyncio.fixture
async def cluster_client(aiohttp_client: Any, tmp_path, cluster) -> Any:
    from easel.core.plugins import load_plugins

    registry = load_plugins([PLUGIN], entry_points=False, environ={})
    app = create_app(
        ServerConfig(port=0, data_dir=tmp_path / "data"),
        registry,
        cluster=cluster,
        runner_config=RunnerConfig(plugin_files=(PLUGIN,)),
    )
    return await aiohttp_client(app)


async def test_run_executes_on_the_cluster_and_its_file_is_served(cluster_client):
    events = []
    async with cluster_client.ws_connect("/api/events") as ws:
        run_id = await submit(cluster_client, slow_save(value=7, steps=3))
        run = await wait_run(cluster_client, run_id, timeout=120)
        while True:
            message = await ws.receive_json(timeout=10)
            events.append(message["type"])
            if message.get("type") == "run_status" and message.get("status") == "succeeded":
                break
    assert run["status"] == "succeeded", run
    assert run["nodes"]["slow"]["status"] == "executed"
    [file] = run["outputs"]["save"]["files"]
    assert file.startswith(f"cluster/{run_id}/")
    served = await cluster_client.get(f"/api/outputs/{file}")
    assert served.status == 200 and (await served.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert "node_progress" in events and "node_finished" in events  # streamed from the worker


async def test_invalid_workflow_is_refused_before_reaching_the_cluster(cluster_client):
    response = await cluster_client.post(
        "/api/runs", json={"workflow": workflow({"save": {"type": "TestSave", "inputs": {}}})}
    )
    assert response.status == 400
    body = await response.json()
    assert body["problems"][0]["input"] == "value"
