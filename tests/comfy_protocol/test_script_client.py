"""A ComfyUI script client, written the way ComfyUI's script_examples are (POST /prompt with a
client id, listen on /ws until `executing` is None for that prompt, then GET /history/{id} and
each image through GET /view), against a real `easel serve` process and the demo model.

It runs the real ComfyUI API files in shared/comfy_workflows as a script would: the file as
saved, with the checkpoint names set to the demo model (as `easel run --checkpoint` does) and
the latent size set to its native 32 px. Each image equals the one `easel run` makes from the
same file with the same settings.
"""

from __future__ import annotations

import asyncio
import io
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.comfy.conftest import SHARED_COMFY
from tests.server.serverproc import Server, free_port

DEMO = "easel-shapes"
SIZE = 32
FILES = {
    "comfyui_script_examples_basic_api_example.api.json": ["ComfyUI"],
    "comfyui_tests_default_graph_sdxl1_0.api.json": ["test_inference"],
    "ericHuang_img2img.api.json": ["Comic"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("comfy-script") / "data"
    process = Server(data, free_port())
    yield process
    process.stop()


def for_the_demo_model(prompt: dict[str, Any]) -> dict[str, Any]:
    """What a script sets before queueing: the checkpoint it has, the size it wants."""
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = DEMO
        if node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=SIZE, height=SIZE)
    return prompt


# -- the client, as script_examples/websockets_api_example.py goes about it ----------------------
def queue_prompt(base: str, prompt: dict[str, Any], client_id: str) -> dict[str, Any]:
    data = json.dumps({"prompt": prompt, "client_id": client_id}).encode("utf-8")
    request = urllib.request.Request(f"{base}/prompt", data=data)
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def get_image(base: str, filename: str, subfolder: str, folder_type: str) -> bytes:
    query = urllib.parse.urlencode(
        {"filename": filename, "subfolder": subfolder, "type": folder_type}
    )
    with urllib.request.urlopen(f"{base}/view?{query}", timeout=30) as response:
        return bytes(response.read())


def get_history(base: str, prompt_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/history/{prompt_id}", timeout=30) as response:
        return dict(json.loads(response.read()))


def upload_image(base: str, name: str, data: bytes) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\n'
            f"true\r\n--{boundary}--\r\n"
        ).encode()
    )
    request = urllib.request.Request(
        f"{base}/upload/image",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


async def listen(base: str, client_id: str, start: Any) -> tuple[str, list[dict[str, Any]]]:
    """Open /ws, queue the prompt (`start`), read messages until the prompt's end."""
    import aiohttp

    seen: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{base.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws,
    ):
        queued = await asyncio.get_running_loop().run_in_executor(None, start)
        prompt_id = queued["prompt_id"]
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary previews
            data = json.loads(message.data)
            seen.append(data)
            if (
                data["type"] == "executing"
                and data["data"]["node"] is None
                and data["data"]["prompt_id"] == prompt_id
            ):
                return prompt_id, seen
            if data["type"] == "execution_error":
                raise AssertionError(f"the run failed: {data['data']}")
    raise AssertionError("the WebSocket closed before the prompt finished")


def get_images(base: str, prompt: dict[str, Any]) -> tuple[dict[str, list[bytes]], list[Any]]:
    client_id = str(uuid.uuid4())
    prompt_id, seen = asyncio.run(
        listen(base, client_id, lambda: queue_prompt(base, prompt, client_id))
    )
    history = get_history(base, prompt_id)[prompt_id]
    images: dict[str, list[bytes]] = {}
    for node_id, node_output in history["outputs"].items():
        images[node_id] = [
            get_image(base, image["filename"], image["subfolder"], image["type"])
            for image in node_output.get("images", [])
        ]
    return images, seen


# -- the tests ---------------------------------------------------------------------------------
def reference_png(size: int = SIZE) -> bytes:
    picture = Image.new("RGB", (size, size), (230, 230, 230))
    for x in range(8, 24):
        for y in range(8, 24):
            picture.putpixel((x, y), (200, 30, 30))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def easel_run(source: Path, workdir: Path, prompt: dict[str, Any]) -> list[Path]:
    """`easel run` of the same file with the same settings."""
    from easel.cli.main import main

    sets = [
        arg
        for node_id, node in prompt.items()
        if node["class_type"] == "EmptyLatentImage"
        for arg in ("--set", f"{node_id}.width={SIZE}", "--set", f"{node_id}.height={SIZE}")
    ]
    assert (
        main(
            [
                "run",
                str(source),
                "-q",
                "--checkpoint",
                DEMO,
                "--output-dir",
                str(workdir / "output"),
                *sets,
            ]
        )
        == 0
    )
    return sorted((workdir / "output").rglob("*.png"))


def pixels(data: bytes | Path) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as picture:
        return np.asarray(picture.convert("RGB"))


@pytest.mark.parametrize("name", sorted(FILES))
def test_script_client_runs_the_shared_comfyui_file(server, tmp_path, monkeypatch, name) -> None:
    source = SHARED_COMFY / name
    prompt = for_the_demo_model(json.loads(source.read_text(encoding="utf-8")))
    if any(node["class_type"] == "LoadImage" for node in prompt.values()):
        stored = upload_image(server.base, "reference.png", reference_png())
        assert stored == {"name": "reference.png", "subfolder": "", "type": "input"}
        (tmp_path / "reference.png").write_bytes(reference_png())
    images, seen = get_images(server.base, prompt)
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "status" and "execution_start" in kinds and "progress" in kinds
    assert "executed" in kinds and "execution_success" in kinds
    made = [image for node_images in images.values() for image in node_images]
    assert len(made) == 1, images
    assert pixels(made[0]).shape == (SIZE, SIZE, 3)
    assert pixels(made[0]).std() > 5  # a picture, not a flat fill
    # The same image as `easel run` of the same file and settings.
    monkeypatch.chdir(tmp_path)  # where the img2img file finds its reference.png
    expected = easel_run(source, tmp_path, prompt)
    assert len(expected) == 1
    assert np.array_equal(pixels(made[0]), pixels(expected[0]))
