"""Plugin HTTP routes are mounted under /api/plugins/<plugin>/ behind the server's security,
and /api/plugins gives each plugin's problems."""

from __future__ import annotations

import textwrap

import pytest
import pytest_asyncio

from easel.core.plugins import load_plugins
from easel.server import ServerConfig, create_app

pytestmark = pytest.mark.asyncio

PLUGIN = """
import easel
from aiohttp import web


async def hello(request):
    return web.json_response({"hello": request.match_info["who"]})


async def echo(request):
    return web.json_response(await request.json())


@easel.hookimpl
def register_routes(register):
    register("GET", "/hello/{who}", hello)
    register("POST", "/echo", echo)


@easel.hookimpl
def register_nodes(register):
    raise RuntimeError("broken on purpose\\nwith a second line")
"""


async def make(aiohttp_client, tmp_path, token=None):
    path = tmp_path / "greeter.py"
    path.write_text(textwrap.dedent(PLUGIN))
    registry = load_plugins([str(path)], entry_points=False, environ={})
    config = ServerConfig(port=0, data_dir=tmp_path / "data", token=token)
    return await aiohttp_client(create_app(config, registry))


@pytest_asyncio.fixture
async def client(aiohttp_client, tmp_path):
    return await make(aiohttp_client, tmp_path)


async def test_plugin_route_is_served_under_its_prefix(client) -> None:
    response = await client.get("/api/plugins/greeter/hello/ada")
    assert response.status == 200 and await response.json() == {"hello": "ada"}
    posted = await client.post("/api/plugins/greeter/echo", json={"x": 1})
    assert await posted.json() == {"x": 1}
    assert (await client.get("/hello/ada")).status == 404


async def test_plugin_routes_are_behind_the_origin_and_host_checks(client) -> None:
    foreign = await client.post(
        "/api/plugins/greeter/echo", json={}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status == 403
    rebinding = await client.get("/api/plugins/greeter/hello/x", headers={"Host": "evil.example"})
    assert rebinding.status == 403


async def test_plugin_routes_need_the_token_when_one_is_set(aiohttp_client, tmp_path) -> None:
    client = await make(aiohttp_client, tmp_path, token="s3cret-token")
    assert (await client.get("/api/plugins/greeter/hello/x")).status == 401
    ok = await client.get(
        "/api/plugins/greeter/hello/x", headers={"Authorization": "Bearer s3cret-token"}
    )
    assert ok.status == 200


async def test_api_plugins_gives_each_problem(client) -> None:
    listed = await (await client.get("/api/plugins")).json()
    greeter = next(p for p in listed["plugins"] if p["name"] == "greeter")
    assert greeter["ok"] is False
    assert greeter["errors"] == ["register_nodes failed: RuntimeError: broken on purpose"]
