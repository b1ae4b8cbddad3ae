"""GET /api/nodes (node schemas) and GET /api/plugins (editor assets each plugin ships)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from easel import __version__
from easel.server.state import state

routes = web.RouteTableDef()


@routes.get("/api/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """Every node type's schema, keyed by type name (choices are read fresh each time)."""
    return web.json_response(state(request).registry.schemas())


@routes.get("/api/nodes/aliases")
async def node_aliases(request: web.Request) -> web.Response:
    """ComfyUI class names -> the Easel node type the importer maps them to (editor search)."""
    from easel.server.comfy_schema import node_maps

    return web.json_response(
        {
            name: m.easel_type
            for name, m in sorted(node_maps(state(request).registry).items())
            if name != m.easel_type
        }
    )


@routes.get("/api/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    plugins = []
    for name, info in sorted(state(request).registry.plugins.items()):
        entry: dict[str, object] = {
            "name": name,
            "version": info.version,
            "nodes": info.nodes,
            "ok": info.ok,
            "errors": info.errors,
            "notes": info.notes,
        }
        if info.web_assets is not None:
            base = f"/plugins/{quote(name, safe='')}/"
            entry["assets"] = base
            entry["modules"] = [base + f for f in asset_files(info.web_assets, ".js")]
            entry["styles"] = [base + f for f in asset_files(info.web_assets, ".css")]
        plugins.append(entry)
    return web.json_response({"version": __version__, "plugins": plugins})


def asset_files(folder: Path, suffix: str) -> list[str]:
    """Top-level files the editor loads: `index.js` alone if present, else every file."""
    if suffix == ".js" and (folder / "index.js").is_file():
        return ["index.js"]
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.suffix == suffix and not p.name.startswith(".")
    )
