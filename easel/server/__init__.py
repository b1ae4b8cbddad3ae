"""The aiohttp server: REST API, WebSocket events, persistent queue, and the editor's files.

`create_app` and `ServerConfig` load on first use, so commands that only read the server's
settings (`easel run` builds its parser with `easel serve`'s) do not import aiohttp.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from easel.server.app import create_app

        return create_app
    if name == "ServerConfig":
        from easel.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(f"module 'easel.server' has no attribute {name!r}")
