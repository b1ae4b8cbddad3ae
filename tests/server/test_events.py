"""WS /api/events: every executor event as JSON, with step previews as PNG data URLs."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import pytest
from PIL import Image

from tests.server.conftest import slow_save, submit, workflow

pytestmark = pytest.mark.asyncio


async def collect(ws, run_id: str, until: str = "run_status", timeout: float = 20) -> list:
    messages: list[dict[str, Any]] = []

    async def read() -> None:
        while True:
            message = await ws.receive_json()
            if message.get("run_id") != run_id:
                continue
            messages.append(message)
            if message["type"] == until and message.get("status") != "running":
                return

    await asyncio.wait_for(read(), timeout)
    return messages


async def test_events_stream_a_run_with_previews(client) -> None:
    ws = await client.ws_connect(
        "/api/events", headers={"Origin": f"http://127.0.0.1:{client.port}"}
    )
    hello = await ws.receive_json()
    assert hello["type"] == "hello" and "queue" in hello
    run_id = await submit(client, slow_save(value=9, steps=3))
    messages = await collect(ws, run_id)
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "run_queued"
    assert kinds[1:3] == ["run_status", "run_started"]
    assert kinds[-2:] == ["run_finished", "run_status"]
    progress = [m for m in messages if m["type"] == "node_progress"]
    assert [(m["node"], m["step"], m["total"]) for m in progress] == [
        ("slow", 1, 3),
        ("slow", 2, 3),
        ("slow", 3, 3),
    ]
    header, data = progress[-1]["preview"].split(",", 1)
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.size == (16, 16) and image.getpixel((0, 0)) == (255, 40, 90)
    finished = {m["node"]: m for m in messages if m["type"] == "node_finished"}
    assert finished["save"]["ui"]["files"][0].endswith("_9.png")
    assert messages[-1]["status"] == "succeeded"
    assert messages[-1]["outputs"]["save"] == finished["save"]["ui"]
    started = [m["node"] for m in messages if m["type"] == "node_started"]
    assert started == ["slow", "save"]

    again = await submit(client, slow_save(value=9, steps=3))
    kinds = [m["type"] for m in await collect(ws, again)]
    assert kinds.count("node_cached") == 2 and "node_started" not in kinds
    await ws.close()


async def test_events_report_failures_and_cancellation(client) -> None:
    ws = await client.ws_connect("/api/events")
    await ws.receive_json()
    failing = workflow(
        {
            "f": {"type": "TestFail", "inputs": {"value": 1}},
            "s": {"type": "TestSlow", "inputs": {}},
            "save": {"type": "TestSave", "inputs": {"value": ["s", "value"]}},
        }
    )
    run_id = await submit(client, failing)
    messages = await collect(ws, run_id)
    failed = next(m for m in messages if m["type"] == "node_failed")
    assert (failed["node"], failed["input"], failed["message"]) == (
        "f",
        "value",
        "refusing value 1",
    )
    assert "traceback" not in failed
    assert messages[-1]["status"] == "failed"

    slow = await submit(client, slow_save(value=2, steps=500, delay=0.01))
    await asyncio.sleep(0.2)
    await client.delete(f"/api/runs/{slow}")
    kinds = [m["type"] for m in await collect(ws, slow)]
    assert "run_cancelled" in kinds
    await ws.close()


async def test_every_client_gets_every_event(client) -> None:
    sockets = [await client.ws_connect("/api/events") for _ in range(5)]
    for ws in sockets:
        await ws.receive_json()
    run_id = await submit(client, slow_save(value=4, steps=2))
    results = [await collect(ws, run_id) for ws in sockets]
    reference = [m["type"] for m in results[0]]
    assert all([m["type"] for m in r] == reference for r in results)
    for ws in sockets:
        await ws.close()
