"""The editor's files (easel/web) and each plugin's editor assets under /plugins/{name}/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from easel.core.plugins import Registry

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
EDITOR_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        WEB_DIR / "index.html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": EDITOR_CSP},
    )


def add_static_routes(app: web.Application, registry: Registry) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", WEB_DIR, follow_symlinks=False, append_version=False)
    for name, info in sorted(registry.plugins.items()):
        if info.web_assets is not None:
            app.router.add_static(
                f"/plugins/{quote(name, safe='')}/", info.web_assets, follow_symlinks=False
            )


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")
