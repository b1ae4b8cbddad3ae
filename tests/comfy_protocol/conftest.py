"""ComfyUI protocol fixtures: the server's test nodes, runs on a thread (fast), a client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from easel.server import ServerConfig
from tests.server.conftest import client, png_bytes, registry

__all__ = ["client", "png_bytes", "registry"]


@pytest.fixture
def config(tmp_path: Any) -> ServerConfig:
    """Runs on a thread (fast): the protocol does not depend on where runs execute."""
    return ServerConfig(port=0, data_dir=tmp_path / "data", worker_process=False)


def slow_save(value: int = 5, steps: int = 3, delay: float = 0.0) -> dict[str, Any]:
    """An API-format prompt with Easel's names: TestSlow -> TestSave."""
    return {
        "1": {"class_type": "TestSlow", "inputs": {"value": value, "steps": steps, "delay": delay}},
        "2": {"class_type": "TestSave", "inputs": {"value": ["1", 0]}},
    }


async def queue_prompt(client: TestClient, prompt: dict[str, Any], **extra: Any) -> str:
    response = await client.post("/prompt", json={"prompt": prompt, **extra})
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"prompt_id", "number", "node_errors"} and body["node_errors"] == {}
    return str(body["prompt_id"])


async def wait_history(client: TestClient, prompt_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        history = await (await client.get(f"/history/{prompt_id}")).json()
        if prompt_id in history:
            return dict(history[prompt_id])
        assert time.monotonic() < deadline, f"prompt {prompt_id} not in the history"
        await asyncio.sleep(0.02)


async def messages_until(ws: Any, prompt_id: str, timeout: float = 20.0) -> list[Any]:
    """Every message (dicts, and bytes for binary frames) up to the run's end: `executing`
    with node None, sent once the run is in the history (as ComfyUI does)."""
    received: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive(timeout=max(deadline - time.monotonic(), 0.1))
        if message.type.name == "BINARY":
            received.append(message.data)
            continue
        assert message.type.name == "TEXT", message
        data = json.loads(message.data)
        received.append(data)
        if (
            data["type"] == "executing"
            and data["data"]["node"] is None
            and data["data"].get("prompt_id") == prompt_id
        ):
            return received
