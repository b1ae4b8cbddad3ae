"""ComfyUI's own frontend (the `comfyui-frontend-package` distribution, an optional extra)
served at /comfy/; its API calls go to /comfy/api/... and /comfy/ws (see comfy_routes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp import web

FRONTEND_PACKAGE = "comfyui_frontend_package"
MOUNT = "/comfy"
INSTALL_HINT = (
    "ComfyUI's frontend is not installed: pip install 'easel[comfyui]' "
    "(the comfyui-frontend-package distribution), then restart the server"
)


def frontend_root() -> Path | None:
    """The installed frontend's static folder, or None."""
    spec = importlib.util.find_spec(FRONTEND_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        static = Path(location) / "static"
        if (static / "index.html").is_file():
            return static
    return None


def add_frontend(app: web.Application) -> None:
    """GET /comfy/ (index.html) and its static files; a clear 404 when not installed."""
    root = frontend_root()

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(MOUNT + "/")

    async def index(request: web.Request) -> web.StreamResponse:
        if root is None:
            raise web.HTTPNotFound(text=INSTALL_HINT)
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get(MOUNT, redirect)
    app.router.add_get(MOUNT + "/", index)
    if root is not None:
        app.router.add_static(MOUNT + "/", root, follow_symlinks=False)
