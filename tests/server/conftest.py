"""Server test fixtures: a registry with fast test nodes, a config in tmp_path, a client."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from PIL import Image

from easel.core.plugins import Registry, load_plugins
from easel.server import ServerConfig, create_app
from tests.server.testnodes import NODES

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def registry() -> Registry:
    registry = load_plugins(entry_points=False, environ={})
    for node_type in NODES:
        registry.add_node("tests", node_type)
    return registry


@pytest.fixture
def config(tmp_path: Any) -> ServerConfig:
    # The worker process starts with the first run: most tests here never run anything.
    return ServerConfig(port=0, data_dir=tmp_path / "data", prestart_worker=False)


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, config: ServerConfig, registry: Registry) -> TestClient:
    return await aiohttp_client(create_app(config, registry))


def workflow(nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


def slow_save(value: int = 5, steps: int = 3, delay: float = 0.0) -> dict[str, Any]:
    """TestSlow -> TestSave: progress with previews, then a PNG file."""
    return workflow(
        {
            "slow": {
                "type": "TestSlow",
                "inputs": {"value": value, "steps": steps, "delay": delay},
            },
            "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"]}},
        }
    )


def echo(value: int) -> dict[str, Any]:
    return workflow({"echo": {"type": "TestEcho", "inputs": {"value": value}}})


def png_bytes(size: tuple[int, int] = (8, 8), text: dict[str, str] | None = None) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


async def submit(client: TestClient, wf: dict[str, Any]) -> str:
    response = await client.post("/api/runs", json={"workflow": wf})
    body = await response.json()
    assert response.status == 201, body
    return str(body["id"])


async def wait_run(
    client: TestClient, run_id: str, timeout: float = 20.0, until: tuple[str, ...] = FINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/runs/{run_id}")
        run = await response.json()
        if run["status"] in until:
            return dict(run)
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s")
        await asyncio.sleep(0.02)
