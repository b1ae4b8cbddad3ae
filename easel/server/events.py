"""Fan-out of run events to WebSocket clients, and step previews as small base64 PNGs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("easel.server.events")

PREVIEW_MAX_SIDE = 256


def encode_preview(preview: Any) -> str | None:
    """A PIL image or an HxW(xC) uint8 array as a `data:image/png;base64,...` URL."""
    if preview is None:
        return None
    from PIL import Image

    try:
        image = preview if isinstance(preview, Image.Image) else Image.fromarray(preview)
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    except Exception as exc:  # a bad preview must not break the run
        log.warning("cannot encode a preview (%s): %s", type(preview).__name__, exc)
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Client:
    def __init__(self, ws: web.WebSocketResponse, max_pending: int) -> None:
        self.ws = ws
        self.pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_pending)
        self.task: asyncio.Task[None] | None = None

    async def send_loop(self) -> None:
        while True:
            message = await self.pending.get()
            if self.ws.closed:
                return
            try:
                await self.ws.send_json(message)
            except (ConnectionError, RuntimeError):
                return


class EventHub:
    """Every connected WebSocket gets every message, in order; a client too slow is dropped."""

    def __init__(self, max_pending: int = 2000) -> None:
        self.max_pending = max_pending
        self.clients: set[_Client] = set()
        self._closing: set[asyncio.Future[bool]] = set()

    def publish(self, message: dict[str, Any]) -> None:
        """Queue a message for every client (call on the event loop's thread)."""
        for client in list(self.clients):
            try:
                client.pending.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("dropping a WebSocket client that does not keep up")
                self.clients.discard(client)
                if client.task is not None:
                    client.task.cancel()
                closing = asyncio.ensure_future(client.ws.close(message=b"too slow"))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    async def serve(self, ws: web.WebSocketResponse, hello: dict[str, Any]) -> None:
        """Send `hello`, then events until the client goes; reads (and ignores) its messages."""
        client = _Client(ws, self.max_pending)
        client.pending.put_nowait(hello)
        client.task = asyncio.create_task(client.send_loop())
        self.clients.add(client)
        try:
            async for _ in ws:
                pass
        finally:
            self.clients.discard(client)
            client.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.task

    async def close(self) -> None:
        for client in list(self.clients):
            await client.ws.close(message=b"server shutting down")
        self.clients.clear()
