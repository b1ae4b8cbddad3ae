"""Refusals: foreign Host (DNS rebinding), foreign or null Origin, missing token, bad routes."""

from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio

from easel.server import ServerConfig, create_app
from tests.server.conftest import echo

pytestmark = pytest.mark.asyncio

STATE_CHANGING = [
    ("post", "/api/runs", {"json": {"workflow": echo(1)}}),
    ("delete", "/api/runs/abc", {}),
    ("put", "/api/workflows/x", {"json": echo(1)}),
    ("delete", "/api/workflows/x", {}),
    ("post", "/api/uploads", {"data": b"x"}),
    ("post", "/api/workflows/convert", {"json": echo(1)}),
    ("post", "/api/workflows/from-file", {"data": b"x"}),
]


def host_of(client) -> str:
    return f"127.0.0.1:{client.port}"


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "127.0.0.1:1", "attacker.com", "localhost.evil.com:{port}", ""]
)
async def test_foreign_host_is_refused_everywhere(client, host) -> None:
    header = host.format(port=client.port)
    for path in ("/", "/api/nodes", "/api/runs", "/static/js/main.js"):
        response = await client.get(path, headers={"Host": header})
        assert response.status == 403, (path, header)
        assert "not served" in (await response.json())["error"]
    response = await client.post("/api/runs", json={"workflow": echo(1)}, headers={"Host": header})
    assert response.status == 403


async def test_loopback_names_are_served(client) -> None:
    for name in ("127.0.0.1", "localhost", "[::1]"):
        response = await client.get("/api/nodes", headers={"Host": f"{name}:{client.port}"})
        assert response.status == 200, name


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "http://evil.example",
        "http://127.0.0.1:1",
        "https://127.0.0.1:{port}",
        "file://",
        "chrome-extension://x",
    ],
)
@pytest.mark.parametrize("method,path,kwargs", STATE_CHANGING)
async def test_foreign_or_null_origin_is_refused(
    client, config, origin, method, path, kwargs
) -> None:
    headers = {"Origin": origin.format(port=client.port)}
    response = await getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status == 403, (method, path, origin)
    assert "rigin" in (await response.json())["error"]
    listed = await (await client.get("/api/runs")).json()
    assert listed["total"] == 0
    assert not (config.user_workflows_dir / "x.json").exists()


async def test_same_origin_and_originless_clients_are_served(client) -> None:
    same = await client.post(
        "/api/runs", json={"workflow": echo(1)}, headers={"Origin": f"http://{host_of(client)}"}
    )
    assert same.status == 201
    scripted = await client.post("/api/runs", json={"workflow": echo(2)})
    assert scripted.status == 201


async def test_cross_site_fetch_metadata_is_refused(client) -> None:
    response = await client.post(
        "/api/runs", json={"workflow": echo(1)}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status == 403


async def test_reading_with_a_foreign_origin_is_allowed_but_cannot_change(client) -> None:
    response = await client.get("/api/nodes", headers={"Origin": "http://evil.example"})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin", ["null", "http://evil.example"])
async def test_websocket_refuses_foreign_origin(client, origin) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/api/events", headers={"Origin": origin})
    assert info.value.status == 403


async def test_websocket_refuses_foreign_host(client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/api/events", headers={"Host": f"evil.example:{client.port}"})
    assert info.value.status == 403


@pytest_asyncio.fixture
async def token_client(aiohttp_client, tmp_path, registry):
    config = ServerConfig(port=0, data_dir=tmp_path / "t", token="s3cret-token")
    return await aiohttp_client(create_app(config, registry))


async def test_token_is_required_when_set(token_client) -> None:
    client = token_client
    for path in ("/", "/api/nodes", "/api/runs", "/api/outputs/x.png", "/static/js/main.js"):
        response = await client.get(path)
        assert response.status == 401, path
        assert "token" in (await response.json())["error"]
    wrong = await client.get("/api/nodes", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    bearer = await client.get("/api/nodes", headers={"Authorization": "Bearer s3cret-token"})
    assert bearer.status == 200
    cookie = await client.get("/api/nodes", headers={"Cookie": "easel_token=s3cret-token"})
    assert cookie.status == 200
    posted = await client.post(
        "/api/runs", json={"workflow": echo(1)}, headers={"Authorization": "Bearer s3cret-token"}
    )
    assert posted.status == 201
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/api/events")
    ws = await client.ws_connect("/api/events", headers={"Authorization": "Bearer s3cret-token"})
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()


async def test_printed_url_token_becomes_a_cookie(token_client) -> None:
    client = token_client
    response = await client.get("/?token=s3cret-token", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/"
    cookie = response.cookies["easel_token"]
    assert cookie.value == "s3cret-token"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    client.session.cookie_jar.clear()
    bad = await client.get("/?token=wrong", allow_redirects=False)
    assert bad.status == 401


async def test_exposed_server_requires_a_token(tmp_path, registry) -> None:
    config = ServerConfig(host="0.0.0.0", port=0, data_dir=tmp_path / "x")
    assert config.exposed
    with pytest.raises(ValueError, match="requires a token"):
        create_app(config, registry)
    assert not ServerConfig(host="::1", data_dir=tmp_path / "y").exposed
    assert not ServerConfig(host="localhost", data_dir=tmp_path / "y").exposed


async def test_exposed_server_with_token_accepts_its_own_name(
    aiohttp_client, tmp_path, registry
) -> None:
    config = ServerConfig(host="192.168.7.7", port=0, data_dir=tmp_path / "e", token="t")
    client = await aiohttp_client(create_app(config, registry))
    auth = {"Authorization": "Bearer t"}
    ok = await client.get("/api/nodes", headers={**auth, "Host": f"192.168.7.7:{client.port}"})
    assert ok.status == 200
    other = await client.get("/api/nodes", headers={**auth, "Host": f"evil.com:{client.port}"})
    assert other.status == 403


async def test_unknown_routes_and_methods_get_json(client) -> None:
    missing = await client.get("/api/nothing")
    assert missing.status == 404
    assert (await missing.json())["error"]
    wrong = await client.patch("/api/runs")
    assert wrong.status == 405
    assert (await wrong.json())["error"]


async def test_editor_page_has_security_headers(client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<title>" in await response.text()
