"""GET/PUT/DELETE /api/workflows/{name}, conversion and reading workflows from dropped files."""

from __future__ import annotations

import json

import aiohttp
import pytest

from easel.pngmeta import WORKFLOW_KEY
from easel.server import routes_workflows
from tests.server.conftest import echo, png_bytes

pytestmark = pytest.mark.asyncio


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    folder = tmp_path / "project-workflows"
    folder.mkdir()
    (folder / "text_to_image.json").write_text(json.dumps(echo(1)))
    monkeypatch.setattr(routes_workflows, "project_workflows_dir", lambda: folder)
    return folder


async def test_save_list_load_delete(client, config, project_dir) -> None:
    mine = echo(42)
    mine["ui"] = {"positions": {"echo": [10, 20]}}
    response = await client.put("/api/workflows/my flow", json=mine)
    assert response.status == 200
    assert await response.json() == {"name": "my flow", "source": "user", "readonly": False}
    assert json.loads((config.user_workflows_dir / "my flow.json").read_text()) == mine

    listed = (await (await client.get("/api/workflows")).json())["workflows"]
    assert [(w["name"], w["source"], w["readonly"]) for w in listed] == [
        ("my flow", "user", False),
        ("text_to_image", "project", True),
    ]

    loaded = await client.get("/api/workflows/my flow")
    assert await loaded.json() == mine
    assert loaded.headers["X-Easel-Source"] == "user"
    project = await client.get("/api/workflows/text_to_image.json")
    assert (await project.json())["nodes"]["echo"]["inputs"]["value"] == 1

    assert (await client.delete("/api/workflows/my flow")).status == 200
    assert (await client.get("/api/workflows/my flow")).status == 404


async def test_project_workflows_are_read_only(client, config, project_dir) -> None:
    before = (project_dir / "text_to_image.json").read_text()
    response = await client.delete("/api/workflows/text_to_image")
    assert response.status == 403
    assert "read-only" in (await response.json())["error"]
    # Saving under a project name writes the user's own copy, which then wins.
    assert (await client.put("/api/workflows/text_to_image", json=echo(9))).status == 200
    assert (project_dir / "text_to_image.json").read_text() == before
    loaded = await (await client.get("/api/workflows/text_to_image")).json()
    assert loaded["nodes"]["echo"]["inputs"]["value"] == 9


async def test_bad_names_and_bodies_are_refused(client, config, tmp_path, project_dir) -> None:
    for name in ("bad*name", ".hidden", "a..b", "a" * 120):
        response = await client.put(f"/api/workflows/{name}", json=echo(1))
        assert response.status == 400, name
        assert "names" in (await response.json())["error"]
    response = await client.put("/api/workflows/..%2F..%2Fescape", json=echo(1))
    assert response.status in (400, 404)
    assert not (tmp_path / "escape.json").exists()
    assert not (config.data_dir / "escape.json").exists()
    response = await client.put("/api/workflows/ok", json={"nodes": "no"})
    assert response.status == 400
    assert (await response.json())["problems"]
    assert (await client.get("/api/workflows/nothing")).status == 404
    assert (await client.delete("/api/workflows/nothing")).status == 404


async def test_convert_detects_the_format(client) -> None:
    ok = await client.post("/api/workflows/convert", json=echo(3))
    assert ok.status == 200
    body = await ok.json()
    assert body["from"] == "easel" and body["workflow"]["nodes"]["echo"]["type"] == "TestEcho"
    comfy = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    response = await client.post("/api/workflows/convert", json=comfy)
    body = await response.json()
    if response.status == 200:  # the ComfyUI importer is installed
        assert body["from"] == "comfy-api"
        assert body["workflow"]["format"] == "easel.workflow"
    else:
        assert response.status == 400
        assert any("ComfyUI" in p["message"] for p in body["problems"])
    bad = await client.post("/api/workflows/convert", json={"what": 1})
    assert bad.status == 400


async def test_workflow_from_a_dropped_png_or_json(client) -> None:
    wf = echo(5)
    wf["ui"] = {"positions": {"echo": [1, 2]}}
    png = png_bytes(text={WORKFLOW_KEY: json.dumps(wf)})
    multipart = aiohttp.FormData()
    multipart.add_field("file", png, filename="made-by-easel.png", content_type="image/png")
    response = await client.post("/api/workflows/from-file", data=multipart)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["file"] == "png" and body["workflow"]["nodes"] == wf["nodes"]

    raw = await client.post(
        "/api/workflows/from-file", data=png, headers={"Content-Type": "image/png"}
    )
    assert (await raw.json())["workflow"]["nodes"] == wf["nodes"]

    as_json = await client.post(
        "/api/workflows/from-file",
        data=json.dumps(wf).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert (await as_json.json())["file"] == "json"

    plain = await client.post(
        "/api/workflows/from-file", data=png_bytes(), headers={"Content-Type": "image/png"}
    )
    assert plain.status == 400
    assert "no workflow" in json.dumps(await plain.json())

    junk = await client.post(
        "/api/workflows/from-file",
        data=b"GIF89a....",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert junk.status == 415
