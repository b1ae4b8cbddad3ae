"""The aiohttp server: REST API, WebSocket events, persistent queue, and the editor's files."""

from easel.server.app import create_app
from easel.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
