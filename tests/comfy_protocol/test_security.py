"""Every ComfyUI protocol route (and the frontend's mount) behind the server's Host, Origin
and token checks, exactly as Easel's own /api/... routes."""

from __future__ import annotations

import pytest
import pytest_asyncio

from easel.server import ServerConfig, create_app
from easel.server.comfy_routes import paths

pytestmark = pytest.mark.asyncio

SAMPLE = {
    "{prompt_id}": "abc",
    "{job_id}": "abc",
    "{node_class}": "TestSlow",
    "{folder}": "checkpoints",
    "{id}": "Comfy.A",
    "{file}": "workflows%2Fa.json",
    "{dest}": "workflows%2Fb.json",
}
STATE_CHANGING = ("POST", "DELETE")
FOREIGN_ORIGINS = ["null", "http://evil.example", "http://127.0.0.1:1"]


def concrete(path: str) -> str:
    for name, value in SAMPLE.items():
        path = path.replace(name, value)
    return path


ALL = sorted(
    {(method, concrete(path)) for method, path in paths()}
    | {("GET", "/comfy/"), ("GET", "/comfy/index.html")}
)


async def test_every_route_is_listed_under_both_mounts() -> None:
    listed = set(paths())
    assert ("POST", "/prompt") in listed and ("POST", "/comfy/api/prompt") in listed
    assert ("GET", "/ws") in listed and ("GET", "/comfy/api/ws") in listed
    assert not [p for _, p in listed if p.startswith("/api/")]  # Easel's own namespace


@pytest.mark.parametrize("method,path", ALL)
async def test_foreign_host_is_refused(client, method, path) -> None:
    response = await client.request(method, path, headers={"Host": "evil.example"})
    assert response.status == 403, (method, path)
    assert "not served" in (await response.json())["error"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
@pytest.mark.parametrize("method,path", [r for r in ALL if r[0] in STATE_CHANGING])
async def test_state_changing_routes_refuse_foreign_origins(
    client, config, method, path, origin
) -> None:
    response = await client.request(
        method,
        path,
        headers={"Origin": origin},
        json={"prompt": {"1": {"class_type": "TestEcho", "inputs": {"value": 1}}}},
    )
    assert response.status == 403, (method, path, origin)
    assert "rigin" in (await response.json())["error"]
    assert (await (await client.get("/api/runs")).json())["total"] == 0
    assert not (config.data_dir / "comfyui" / "user" / "default" / "comfy.settings.json").exists()


async def test_cross_site_fetch_metadata_is_refused(client) -> None:
    response = await client.post(
        "/prompt",
        headers={"Sec-Fetch-Site": "cross-site"},
        json={"prompt": {"1": {"class_type": "TestEcho", "inputs": {}}}},
    )
    assert response.status == 403


@pytest.mark.parametrize("path", ["/ws", "/comfy/ws", "/comfy/api/ws"])
async def test_websocket_refuses_foreign_origin(client, path) -> None:
    import aiohttp

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


@pytest_asyncio.fixture
async def token_client(aiohttp_client, tmp_path, registry):
    config = ServerConfig(
        port=0, data_dir=tmp_path / "t", token="s3cret-token", worker_process=False
    )
    return await aiohttp_client(create_app(config, registry))


@pytest.mark.parametrize("method,path", ALL)
async def test_token_is_required_on_every_route(token_client, method, path) -> None:
    response = await token_client.request(method, path, allow_redirects=False)
    assert response.status == 401, (method, path)
    assert "token" in (await response.json())["error"]


async def test_the_token_opens_the_protocol(token_client) -> None:
    auth = {"Authorization": "Bearer s3cret-token"}
    response = await token_client.post(
        "/prompt",
        headers=auth,
        json={"prompt": {"1": {"class_type": "TestEcho", "inputs": {"value": 1}}}},
    )
    assert response.status == 200
    assert (await token_client.get("/object_info/TestEcho", headers=auth)).status == 200
    ws = await token_client.ws_connect("/ws?clientId=t", headers=auth)
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()
