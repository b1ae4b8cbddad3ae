"""WS /api/events: every executor event as JSON, step previews included, for every client."""

from __future__ import annotations

from aiohttp import web

from easel import __version__
from easel.server.state import state

routes = web.RouteTableDef()


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    st = state(request)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="this is a WebSocket endpoint (connect with ws://)")
    await ws.prepare(request)
    active = st.worker.active
    hello = {
        "type": "hello",
        "version": __version__,
        "queue": st.queue.counts(),
        "running": active.id if active else None,
    }
    await st.hub.serve(ws, hello)
    return ws
