"""ComfyUI's HTTP and WebSocket protocol on the server's own queue, worker and folders."""

from __future__ import annotations

import struct

import pytest

from tests.comfy_protocol.conftest import messages_until, queue_prompt, slow_save, wait_history

pytestmark = pytest.mark.asyncio


async def test_object_info_lists_easel_nodes_in_comfyui_shape(client) -> None:
    info = await (await client.get("/object_info")).json()
    slow = info["TestSlow"]
    assert slow["input"]["required"]["steps"] == ["INT", {"default": 3, "min": 1, "max": 1000}]
    assert slow["output"] == ["INT"] and slow["output_name"] == ["value"]
    assert slow["output_node"] is False and info["TestSave"]["output_node"] is True
    assert slow["category"] == "testing" and slow["name"] == "TestSlow"
    sampler = info["KSampler"]["input"]
    assert sampler["required"]["latent"] == ["LATENT"]  # Easel's KSampler, Easel's names
    assert sampler["optional"]["negative"] == ["CONDITIONING"]
    assert sampler["required"]["seed"][1]["control_after_generate"] is True
    assert sampler["required"]["sampler_name"][0][0] == "euler"
    # ComfyUI names Easel does not use are listed in ComfyUI's shape.
    loader = info["CheckpointLoaderSimple"]
    assert list(loader["input"]["required"]) == ["ckpt_name"]
    assert loader["output"] == ["MODEL", "CLIP", "VAE"]
    assert list(info["EmptyLatentImage"]["input"]["required"]) == ["width", "height", "batch_size"]
    assert info["TestLoad"]["input"]["required"]["image"][1] == {"image_upload": True}
    one = await (await client.get("/object_info/TestSlow")).json()
    assert one == {"TestSlow": slow}
    assert await (await client.get("/object_info/Nope")).json() == {}
    assert await (await client.get("/comfy/api/object_info/TestSlow")).json() == one


async def test_a_prompt_runs_with_comfyui_messages_history_and_view(client, config) -> None:
    ws = await client.ws_connect("/ws?clientId=me")
    hello = await ws.receive_json()
    assert hello == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "me"},
    }
    prompt_id = await queue_prompt(
        client,
        slow_save(7),
        client_id="me",
        extra_data={"extra_pnginfo": {"workflow": {"id": "w1"}}, "api_key_comfy_org": "secret"},
    )
    received = await messages_until(ws, prompt_id)
    kinds = [m["type"] if isinstance(m, dict) else "binary" for m in received]
    assert kinds.index("execution_start") < kinds.index("executing") < kinds.index("progress")
    assert kinds[-2:] == ["execution_success", "executing"]
    events = [m for m in received if isinstance(m, dict)]
    progress = [m["data"] for m in events if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (1, 3, "1"),
        (2, 3, "1"),
        (3, 3, "1"),
    ]
    frames = [m for m in received if isinstance(m, bytes)]
    assert len(frames) == 3 and all(struct.unpack(">II", f[:8]) == (1, 2) for f in frames)
    assert all(f[8:16] == b"\x89PNG\r\n\x1a\n" for f in frames)
    executing = [m["data"]["node"] for m in events if m["type"] == "executing"]
    assert executing == ["1", "2", None]
    executed = next(m["data"] for m in events if m["type"] == "executed")
    image = executed["output"]["images"][0]
    assert executed["node"] == "2" and image["type"] == "output" and image["subfolder"] == ""
    assert image["filename"].endswith("_7.png")

    entry = await wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    _number, pid, prompt, extra, outputs = entry["prompt"]
    assert pid == prompt_id and prompt == slow_save(7) and outputs == ["2"]
    assert extra["extra_pnginfo"] == {"workflow": {"id": "w1"}} and extra["client_id"] == "me"
    assert "api_key_comfy_org" not in extra  # account secrets are never stored
    assert entry["outputs"]["2"]["images"] == [image]
    response = await client.get(
        "/view", params={"filename": image["filename"], "subfolder": "", "type": "output"}
    )
    assert response.status == 200
    assert await response.read() == (config.outputs / image["filename"]).read_bytes()
    preview = await client.get(
        "/view", params={"filename": image["filename"], "preview": "jpeg;50"}
    )
    assert preview.status == 200 and preview.content_type == "image/jpeg"
    # The same run through Easel's own API.
    run = await (await client.get(f"/api/runs/{prompt_id}")).json()
    assert run["status"] == "succeeded"
    assert (await (await client.get("/queue")).json()) == {"queue_running": [], "queue_pending": []}
    assert (await (await client.get("/prompt")).json()) == {"exec_info": {"queue_remaining": 0}}
    await ws.close()


async def test_messages_go_to_the_client_that_queued_the_run(client) -> None:
    mine = await client.ws_connect("/ws?clientId=mine")
    other = await client.ws_connect("/ws?clientId=other")
    await mine.receive_json()
    await other.receive_json()
    prompt_id = await queue_prompt(client, slow_save(1, steps=1), client_id="mine")
    await messages_until(mine, prompt_id)
    await wait_history(client, prompt_id)
    seen = []
    while True:
        try:
            message = await other.receive_json(timeout=0.3)
        except TimeoutError:
            break
        seen.append(message["type"])
    assert seen and set(seen) == {"status"}  # queue changes only, no run messages
    await mine.close()
    await other.close()


async def test_bad_prompts_get_comfyui_error_shapes(client) -> None:
    response = await client.post("/prompt", json={"client_id": "x"})
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "no_prompt"
    assert body["node_errors"] == {}
    bad = {
        "1": {"class_type": "TestSlow", "inputs": {"value": 1, "steps": 0}},
        "2": {"class_type": "TestSave", "inputs": {"value": ["1", 0]}},
    }
    response = await client.post("/prompt", json={"prompt": bad})
    body = await response.json()
    assert response.status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    error = body["node_errors"]["1"]
    assert error["class_type"] == "TestSlow"
    assert error["errors"][0]["extra_info"] == {"input_name": "steps"}
    response = await client.post(
        "/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}
    )
    body = await response.json()
    assert response.status == 400 and "NoSuchNode" in str(body["node_errors"]["1"])
    response = await client.post("/prompt", data=b"{not json")
    assert response.status == 400 and (await response.json())["error"]["type"] == "no_prompt"


async def test_interrupt_queue_and_jobs(client) -> None:
    ws = await client.ws_connect("/ws?clientId=c")
    await ws.receive_json()
    first = await queue_prompt(client, slow_save(1, steps=200, delay=0.05), client_id="c")
    second = await queue_prompt(client, slow_save(2, steps=1), client_id="c")
    third = await queue_prompt(client, slow_save(3, steps=1), client_id="c")
    while True:  # wait until the first run is going
        message = await ws.receive()
        if message.type.name == "TEXT" and '"progress"' in message.data:
            break
    queue = await (await client.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[1] for item in queue["queue_pending"]] == [second, third]
    assert queue["queue_pending"][0][2] == slow_save(2, steps=1)
    jobs = await (await client.get("/jobs?status=in_progress,pending")).json()
    assert {j["id"]: j["status"] for j in jobs["jobs"]} == {
        first: "in_progress",
        second: "pending",
        third: "pending",
    }
    assert jobs["pagination"]["total"] == 3
    response = await client.post("/queue", json={"delete": [second]})
    assert response.status == 200
    response = await client.post(f"/jobs/{third}/cancel")
    assert (await response.json())["status"] == "cancelled"
    response = await client.post("/interrupt", json={"prompt_id": first})
    assert response.status == 200
    received = await messages_until(ws, first)
    assert received[-2]["type"] == "execution_interrupted"
    entry = await wait_history(client, first)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    for run_id in (second, third):
        assert (await (await client.get(f"/api/runs/{run_id}")).json())["status"] == "cancelled"
    detail = await (await client.get(f"/jobs/{first}")).json()
    assert detail["status"] == "cancelled"
    assert detail["workflow"]["prompt"] == slow_save(1, steps=200, delay=0.05)
    assert (await client.get("/jobs/nope")).status == 404
    assert (await client.post(f"/jobs/{first}/cancel")).status == 409
    await ws.close()


async def test_a_failed_run_sends_execution_error(client) -> None:
    ws = await client.ws_connect("/ws?clientId=f")
    await ws.receive_json()
    prompt_id = await queue_prompt(
        client, {"9": {"class_type": "TestFail", "inputs": {"value": 3}}}, client_id="f"
    )
    received = await messages_until(ws, prompt_id)
    error = received[-2]["data"]
    assert received[-2]["type"] == "execution_error"
    assert error["node_id"] == "9" and error["node_type"] == "TestFail"
    assert error["exception_message"]
    entry = await wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "error"
    jobs = await (await client.get("/jobs?status=failed")).json()
    assert jobs["jobs"][0]["execution_error"]["node_id"] == "9"
    await ws.close()


async def test_runs_from_easel_api_show_in_comfyui_history(client) -> None:
    from tests.server.conftest import echo, submit, wait_run

    run_id = await submit(client, echo(4))
    await wait_run(client, run_id)
    entry = await wait_history(client, run_id)
    assert entry["prompt"][2] == {"echo": {"class_type": "TestEcho", "inputs": {"value": 4}}}
    assert entry["outputs"]["echo"] == {"value": 4}
    history = await (await client.get("/history?max_items=5")).json()
    assert run_id in history
    # POST /history (clear/delete) is refused with a reason, not faked.
    response = await client.post("/history", json={"clear": True})
    assert response.status == 501 and "not supported" in (await response.json())["error"]


async def test_uploads_and_masks(client, config) -> None:
    from aiohttp import FormData

    from tests.comfy_protocol.conftest import png_bytes

    form = FormData()
    form.add_field("image", png_bytes((8, 8)), filename="pic.png", content_type="image/png")
    form.add_field("overwrite", "false")
    body = await (await client.post("/upload/image", data=form)).json()
    assert body == {"name": "pic.png", "subfolder": "", "type": "input"}
    assert (config.input_dir / "pic.png").read_bytes() == png_bytes((8, 8))
    form = FormData()
    form.add_field("image", png_bytes((4, 4)), filename="pic.png", content_type="image/png")
    body = await (await client.post("/upload/image", data=form)).json()
    assert body["name"] == "pic (1).png"  # other bytes, ComfyUI's naming
    response = await client.get("/view", params={"filename": "pic.png", "type": "input"})
    assert await response.read() == png_bytes((8, 8))
    import io

    from PIL import Image

    mask = io.BytesIO()
    painted = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    painted.putpixel((0, 0), (0, 0, 0, 0))
    painted.save(mask, "PNG")
    form = FormData()
    form.add_field(
        "image", mask.getvalue(), filename="clipspace-mask.png", content_type="image/png"
    )
    form.add_field("original_ref", '{"filename": "pic.png", "subfolder": "", "type": "input"}')
    body = await (await client.post("/upload/mask", data=form)).json()
    with Image.open(config.input_dir / body["name"]) as result:
        assert result.mode == "RGBA" and result.getpixel((0, 0))[3] == 0
        assert result.getpixel((1, 1)) == (10, 200, 30, 255)
    info = await (await client.get("/object_info/TestLoad")).json()
    assert "pic.png" in info["TestLoad"]["input"]["required"]["image"][0]
    for params in (
        {"filename": "../queue.sqlite3", "type": "input"},
        {"filename": "queue.sqlite3", "subfolder": "..", "type": "output"},
        {"filename": "x.png", "type": "elsewhere"},
    ):
        assert (await client.get("/view", params=params)).status in (400, 404), params
    form = FormData()
    form.add_field("image", png_bytes(), filename="x.png", content_type="image/png")
    form.add_field("subfolder", "../../etc")
    assert (await client.post("/upload/image", data=form)).status == 400


async def test_user_data_and_settings(client, config) -> None:
    assert await (await client.get("/users")).json() == {"storage": "server", "migrated": True}
    assert await (await client.get("/settings")).json() == {}
    assert (await client.post("/settings", json={"Comfy.A": 1, "Comfy.B": "x"})).status == 200
    assert (await client.post("/settings/Comfy.A", json=2)).status == 200
    assert await (await client.get("/settings")).json() == {"Comfy.A": 2, "Comfy.B": "x"}
    assert await (await client.get("/settings/Comfy.B")).json() == "x"
    root = config.data_dir / "comfyui" / "user" / "default"
    assert (root / "comfy.settings.json").is_file()
    assert await (await client.get("/userdata?dir=workflows")).json() == []
    response = await client.post(
        "/comfy/api/userdata/workflows%2Fa%20b.json?full_info=true", data=b'{"nodes": []}'
    )
    body = await response.json()
    assert response.status == 200 and body["path"] == "workflows/a b.json"
    listed = await (await client.get("/userdata?dir=workflows&recurse=true&full_info=true")).json()
    assert [f["path"] for f in listed] == ["a b.json"]
    assert await (await client.get("/userdata/workflows%2Fa%20b.json")).read() == b'{"nodes": []}'
    response = await client.post("/userdata/workflows%2Fa%20b.json?overwrite=false", data=b"x")
    assert response.status == 409
    response = await client.post("/userdata/workflows%2Fa%20b.json/move/workflows%2Fc.json")
    assert response.status == 200 and (root / "workflows" / "c.json").is_file()
    assert (await client.delete("/userdata/workflows%2Fc.json")).status == 204
    for bad in ("..%2Fqueue.sqlite3", "%2Fetc%2Fpasswd", "workflows%2F..%2F..%2Fx"):
        assert (await client.get(f"/userdata/{bad}")).status in (400, 404), bad
        assert (await client.post(f"/userdata/{bad}", data=b"x")).status == 400, bad


async def test_easel_api_and_editor_are_not_shadowed(client) -> None:
    assert (await client.get("/api/nodes")).status == 200
    assert (await client.get("/api/runs")).status == 200
    assert (await client.get("/")).status == 200
    assert (await client.get("/api/prompt")).status == 404  # Easel owns /api/...
    stats = await (await client.get("/system_stats")).json()
    assert stats["system"]["comfyui_version"].startswith("easel")
    assert isinstance(await (await client.get("/embeddings")).json(), list)
    kinds = await (await client.get("/models")).json()
    assert "checkpoints" in kinds and "loras" in kinds
    assert isinstance(await (await client.get("/models/checkpoints")).json(), list)
    assert (await client.get("/models/nope")).status == 404
    assert await (await client.get("/extensions")).json() == []
    assert "max_upload_size" in await (await client.get("/features")).json()


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": []},
        {"prompt": {}},
        {"prompt": "x"},
        {"prompt": {"1": 5}},
        {"prompt": {"1": {"class_type": 3, "inputs": {}}}},
        {"prompt": {"1": {"class_type": "TestEcho", "inputs": []}}},
        {"prompt": {"1": {"class_type": "TestEcho", "inputs": {"value": ["9", 0]}}}},
        {"prompt": {"1": {"class_type": "TestEcho", "inputs": {"value": 1}}}, "number": "x"},
        {"prompt": {"1": {"class_type": "KSampler", "inputs": {"latent_image": ["1", 0]}}}},
        [1, 2],
        "text",
        None,
    ],
)
async def test_malformed_prompts_get_400_never_500(client, body) -> None:
    response = await client.post("/prompt", json=body)
    answer = await response.json()
    assert response.status == 400, answer
    assert set(answer) == {"error", "node_errors"} and answer["error"]["message"]
    assert (await (await client.get("/api/runs")).json())["total"] == 0


@pytest.mark.parametrize(
    "path,body",
    [
        ("/queue", {"delete": "x"}),
        ("/queue", [1]),
        ("/jobs/cancel", {"job_ids": [1]}),
        ("/settings", [1]),
        ("/interrupt", "x"),
    ],
)
async def test_malformed_bodies_elsewhere_get_400(client, path, body) -> None:
    response = await client.post(path, json=body)
    assert response.status == 400, (path, await response.text())
    assert "error" in await response.json()


async def test_a_comfyui_named_prompt_runs_through_the_importer(client) -> None:
    """ComfyUI's names (here ComfyUI's PrimitiveInt, which the importer maps to Easel's Int)
    and Easel's names in one prompt."""
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 9}},
        "2": {"class_type": "TestEcho", "inputs": {"value": ["1", 0]}},
    }
    prompt_id = await queue_prompt(client, prompt)
    entry = await wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["2"] == {"value": 9}
    assert entry["prompt"][2] == prompt  # what was posted, as ComfyUI keeps it


async def test_runs_without_a_client_id_reach_every_client_and_reconnects_resume(client) -> None:
    first = await client.ws_connect("/ws?clientId=a")
    second = await client.ws_connect("/comfy/ws")  # no id: the server gives one
    assert (await first.receive_json())["data"]["sid"] == "a"
    assert len((await second.receive_json())["data"]["sid"]) == 32
    prompt_id = await queue_prompt(client, slow_save(2, steps=1))
    for ws in (first, second):
        kinds = [m["type"] for m in await messages_until(ws, prompt_id) if isinstance(m, dict)]
        assert "execution_start" in kinds and "executed" in kinds
    await second.close()
    # A client that reconnects with its id while its run executes is told the current node.
    slow = await queue_prompt(client, slow_save(3, steps=100, delay=0.05), client_id="a")
    while True:
        message = await first.receive()
        if message.type.name == "TEXT" and '"progress"' in message.data:
            break
    await first.close()
    again = await client.ws_connect("/ws?clientId=a")
    assert (await again.receive_json())["type"] == "status"
    resumed = await again.receive_json()
    assert resumed == {
        "type": "executing",
        "data": {"prompt_id": slow, "node": "1", "display_node": "1"},
    }
    await client.post("/interrupt")
    kinds = [m["type"] for m in await messages_until(again, slow) if isinstance(m, dict)]
    assert "execution_interrupted" in kinds
    await again.close()
