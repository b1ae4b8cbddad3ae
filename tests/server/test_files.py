"""GET /api/outputs/{path} (output folder only) and POST/GET /api/uploads (images only, limits)."""

from __future__ import annotations

import os

import aiohttp
import pytest

from easel.server import ServerConfig, create_app
from tests.server.conftest import png_bytes, submit, wait_run, workflow

pytestmark = pytest.mark.asyncio


def form(
    data: bytes, filename: str = "cat.png", field: str = "image", content_type: str = "image/png"
) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field(field, data, filename=filename, content_type=content_type)
    return body


async def test_output_files_are_served_from_the_output_folder_only(
    client, config, tmp_path
) -> None:
    (config.outputs / "sub").mkdir()
    (config.outputs / "sub" / "a.png").write_bytes(png_bytes())
    (config.outputs / ".b.png.part").write_bytes(b"partial")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, config.outputs / "link.txt")

    ok = await client.get("/api/outputs/sub/a.png")
    assert ok.status == 200
    assert ok.headers["Content-Type"] == "image/png"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    for path in (
        "/api/outputs/../secret.txt",
        "/api/outputs/%2e%2e/secret.txt",
        "/api/outputs/sub/..%2F..%2Fsecret.txt",
        "/api/outputs/link.txt",
        "/api/outputs/.b.png.part",
        "/api/outputs/nope.png",
        "/api/outputs/%2Fetc%2Fpasswd",
        "/api/outputs/sub",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert "secret" not in await response.text()
        assert (await response.json())["error"]


async def test_upload_an_image_and_read_it_back(client, config) -> None:
    data = png_bytes((12, 10))
    response = await client.post("/api/uploads", data=form(data, "../../My Cat!.png"))
    assert response.status == 201
    body = await response.json()
    assert body == {
        "name": "My Cat_.png",
        "format": "PNG",
        "width": 12,
        "height": 10,
        "bytes": len(data),
    }
    assert (config.input_dir / "My Cat_.png").read_bytes() == data
    assert [p.name for p in config.input_dir.iterdir()] == ["My Cat_.png"]

    listed = await (await client.get("/api/uploads")).json()
    assert listed["images"] == ["My Cat_.png"]
    served = await client.get("/api/uploads/My Cat_.png")
    assert served.status == 200 and await served.read() == data
    assert (await client.get("/api/uploads/..%2Fqueue.sqlite3")).status == 404

    same = await (await client.post("/api/uploads", data=form(data, "My Cat!.png"))).json()
    assert same["name"] == "My Cat_.png"
    other = await (
        await client.post("/api/uploads", data=form(png_bytes((3, 3)), "My Cat!.png"))
    ).json()
    assert other["name"] == "My Cat_-1.png"


async def test_upload_stores_by_detected_type_not_by_given_name(client, config) -> None:
    response = await client.post("/api/uploads", data=form(png_bytes(), "photo.jpg.exe"))
    assert response.status == 201
    assert (await response.json())["name"] == "photo.jpg.png"


@pytest.mark.parametrize(
    "data,filename",
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "x.svg"),
        (b"#!/bin/sh\necho hi\n", "x.png"),
        (png_bytes()[:40], "truncated.png"),
    ],
)
async def test_upload_refuses_non_images(client, config, data, filename) -> None:
    response = await client.post("/api/uploads", data=form(data, filename))
    assert response.status == 415
    assert "image" in (await response.json())["error"]
    assert list(config.input_dir.iterdir()) == []


async def test_upload_refuses_other_image_formats(client) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "TIFF")
    response = await client.post("/api/uploads", data=form(buffer.getvalue(), "x.tiff"))
    assert response.status == 415
    assert "TIFF images are not accepted" in (await response.json())["error"]


async def test_upload_limits_bytes_and_pixels(aiohttp_client, tmp_path, registry) -> None:
    config = ServerConfig(
        port=0, data_dir=tmp_path / "d", max_upload_bytes=2000, max_upload_pixels=100 * 100
    )
    client = await aiohttp_client(create_app(config, registry))
    big = os.urandom(5000)
    response = await client.post("/api/uploads", data=form(big))
    assert response.status == 413
    assert "too large" in (await response.json())["error"]
    response = await client.post("/api/uploads", data=form(png_bytes((101, 100))))
    assert response.status == 413
    assert "pixels" in (await response.json())["error"]
    assert (await client.post("/api/uploads", data=form(png_bytes((100, 100))))).status == 201


async def test_upload_needs_a_file(client) -> None:
    response = await client.post("/api/uploads", data=b"x", headers={"Content-Type": "image/png"})
    assert response.status == 400
    with aiohttp.MultipartWriter("form-data") as empty:
        empty.append("hello").set_content_disposition("form-data", name="note")
    response = await client.post("/api/uploads", data=empty)
    assert response.status == 400
    assert "no file" in (await response.json())["error"]


async def test_image_inputs_only_name_uploaded_files(client, config, tmp_path) -> None:
    (tmp_path / "outside.png").write_bytes(png_bytes())
    for name in (
        "../outside.png",
        str(tmp_path / "outside.png"),
        "sub/x.png",
        ".hidden.png",
        "missing.png",
    ):
        wf = workflow({"load": {"type": "TestLoad", "inputs": {"image": name}}})
        response = await client.post("/api/runs", json={"workflow": wf})
        assert response.status == 400, name
        problem = (await response.json())["problems"][0]
        assert (problem["node"], problem["input"]) == ("load", "image")
        assert "upload" in problem["message"]
    name = (await (await client.post("/api/uploads", data=form(png_bytes((5, 6))))).json())["name"]
    wf = workflow({"load": {"type": "TestLoad", "inputs": {"image": name}}})
    run = await wait_run(client, await submit(client, wf))
    assert run["status"] == "succeeded"
    assert run["outputs"]["load"] == {"size": [5, 6]}
