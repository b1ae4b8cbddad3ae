"""POST/GET/DELETE /api/runs, history paging, GET /api/nodes and /api/plugins."""

from __future__ import annotations

import asyncio

import pytest

from tests.server.conftest import echo, slow_save, submit, wait_run, workflow

pytestmark = pytest.mark.asyncio


async def test_nodes_lists_every_schema(client) -> None:
    response = await client.get("/api/nodes")
    assert response.status == 200
    nodes = await response.json()
    slow = nodes["TestSlow"]
    assert slow["plugin"] == "tests"
    assert slow["category"] == "testing"
    assert slow["outputs"] == {"value": "INT"}
    assert slow["inputs"]["steps"] == {
        "type": "INT",
        "required": False,
        "default": 3,
        "minimum": 1,
        "maximum": 1000,
    }
    assert nodes["TestLoad"]["inputs"]["image"]["widget"] == "image_upload"
    assert nodes["Math"]["inputs"]["op"]["choices"][0] == "add"
    assert nodes["Seed"]["inputs"]["seed"]["widget"] == "seed"


async def test_plugins_lists_loaded_plugins(client) -> None:
    body = await (await client.get("/api/plugins")).json()
    names = {p["name"]: p for p in body["plugins"]}
    assert "TestSlow" in names["tests"]["nodes"]
    assert "Int" in names["easel"]["nodes"]


async def test_run_succeeds_with_node_states_and_outputs(client) -> None:
    run_id = await submit(client, slow_save(value=7))
    run = await wait_run(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["nodes"]["slow"]["status"] == "executed"
    assert run["nodes"]["save"]["status"] == "executed"
    assert run["error"] is None
    files = run["outputs"]["save"]["files"]
    assert len(files) == 1 and files[0].endswith("_7.png")
    assert run["workflow"]["nodes"]["slow"]["type"] == "TestSlow"
    image = await client.get(f"/api/outputs/{files[0]}")
    assert image.status == 200
    assert (await image.read()).startswith(b"\x89PNG")

    again = await wait_run(client, await submit(client, slow_save(value=7)))
    assert again["nodes"]["slow"]["status"] == "cached"


async def test_invalid_workflow_is_refused_with_every_problem(client) -> None:
    bad = workflow(
        {
            "a": {"type": "TestSlow", "inputs": {"steps": 0}},
            "b": {"type": "NoSuchNode", "inputs": {}},
            "c": {"type": "TestSave", "inputs": {"value": ["a", "nope"]}},
        }
    )
    response = await client.post("/api/runs", json={"workflow": bad})
    assert response.status == 400
    body = await response.json()
    assert body["error"].startswith("invalid workflow")
    where = {(p["node"], p["input"]) for p in body["problems"]}
    assert ("a", "steps") in where
    assert ("b", None) in where
    assert ("c", "value") in where
    assert any("must be >= 1" in p["message"] for p in body["problems"])
    assert (await client.get("/api/runs")).status == 200
    assert (await (await client.get("/api/runs")).json())["total"] == 0


@pytest.mark.parametrize(
    "payload,needle",
    [
        (b"not json", "not valid JSON"),
        (b"", "empty"),
        (b'{"flow": {}}', '{"workflow"'),
        (
            b'{"workflow": {"format": "easel.workflow", "version": 1, "nodes": {}, "junk": 1}}',
            "unknown key",
        ),
        (b'{"workflow": {"hello": "world"}}', "not a workflow"),
    ],
)
async def test_malformed_submissions_get_json_errors(client, payload, needle) -> None:
    response = await client.post(
        "/api/runs", data=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    text = body["error"] + " ".join(p["message"] for p in body.get("problems", []))
    assert needle in text


async def test_comfyui_workflow_goes_through_the_converter(client) -> None:
    comfy = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "no-such-model.safetensors"},
        }
    }
    response = await client.post("/api/runs", json={"workflow": comfy})
    body = await response.json()
    assert response.status == 400
    # Converted to Easel's CheckpointLoader, then validated like any Easel workflow.
    located = [(p["node"], p["node_type"], p["input"]) for p in body["problems"]]
    assert ("1", "CheckpointLoader", "name") in located, body


async def test_too_large_body_is_refused(client, config) -> None:
    big = b'{"workflow": "' + b"x" * (config.max_body_bytes + 10) + b'"}'
    response = await client.post(
        "/api/runs", data=big, headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert "too large" in (await response.json())["error"]


async def test_failed_node_reports_node_input_and_message(client) -> None:
    wf = workflow({"f": {"type": "TestFail", "inputs": {"value": 3}}})
    run = await wait_run(client, await submit(client, wf))
    assert run["status"] == "failed"
    assert run["nodes"]["f"] == {
        "status": "failed",
        "type": "TestFail",
        "message": "refusing value 3",
        "input": "value",
    }
    assert run["error"]["failures"] == [
        {"node": "f", "node_type": "TestFail", "input": "value", "message": "refusing value 3"}
    ]
    assert "refusing value 3" in run["error"]["message"]


async def test_history_pages_newest_first(client) -> None:
    ids = [await submit(client, echo(i)) for i in range(5)]
    for run_id in ids:
        await wait_run(client, run_id)
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/runs?limit=2" + (f"&before={cursor}" if cursor else "")
        body = await (await client.get(url)).json()
        assert body["total"] == 5
        seen += [run["id"] for run in body["runs"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    only = await (await client.get("/api/runs?status=succeeded&limit=1")).json()
    assert only["total"] == 5 and len(only["runs"]) == 1
    assert (await client.get("/api/runs?limit=x")).status == 400


async def test_unknown_run_is_404(client) -> None:
    response = await client.get("/api/runs/nope")
    assert response.status == 404
    assert "nope" in (await response.json())["error"]
    assert (await client.delete("/api/runs/nope")).status == 404


async def test_cancel_queued_and_running_runs(client) -> None:
    running = await submit(client, slow_save(value=1, steps=400, delay=0.01))
    queued = await submit(client, slow_save(value=2))
    await wait_run(client, running, until=("running",))
    detail = await (await client.get(f"/api/runs/{queued}")).json()
    assert detail["status"] == "queued" and detail["position"] == 0

    response = await client.delete(f"/api/runs/{queued}")
    assert response.status == 200
    assert (await response.json())["status"] == "cancelled"

    response = await client.delete(f"/api/runs/{running}")
    assert response.status == 202
    run = await wait_run(client, running)
    assert run["status"] == "cancelled"
    assert run["nodes"]["slow"]["status"] == "cancelled"
    assert run["error"]["message"] == "cancelled by the user"
    assert (await wait_run(client, queued))["status"] == "cancelled"

    response = await client.delete(f"/api/runs/{running}")
    assert response.status == 409
    assert (await response.json())["status"] == "cancelled"
    # The queue goes on after a cancellation.
    assert (await wait_run(client, await submit(client, echo(1))))["status"] == "succeeded"


async def test_running_run_shows_live_node_states(client) -> None:
    run_id = await submit(client, slow_save(value=3, steps=200, delay=0.01))
    await wait_run(client, run_id, until=("running",))
    for _ in range(200):
        run = await (await client.get(f"/api/runs/{run_id}")).json()
        if run["nodes"].get("slow", {}).get("step"):
            break
        await asyncio.sleep(0.02)
    assert run["nodes"]["slow"]["status"] == "running"
    assert run["nodes"]["slow"]["total"] == 200
    assert run["nodes"]["save"]["status"] == "pending"
    await client.delete(f"/api/runs/{run_id}")
    await wait_run(client, run_id)
