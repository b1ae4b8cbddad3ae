"""WS /ws?clientId=: the server's run events as ComfyUI's WebSocket messages.

One bridge listens to the server's event hub (the same events /api/events streams) and turns
each into ComfyUI's messages: `status`, `execution_start`, `execution_cached`, `executing`,
`progress`, `executed`, `execution_success`, `execution_error`, `execution_interrupted`, and
binary preview frames (4-byte event type 1, 4-byte image type 2 = PNG, the image). As in
ComfyUI, a run's messages go to the client whose id was its `client_id` (to every client
when it has none); `status` goes to everyone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from easel.core.status import RunStatus
from easel.server.comfy_history import comfy_outputs
from easel.server.state import ServerState

log = logging.getLogger("easel.server.comfy")

PREVIEW_IMAGE = 1  # ComfyUI's binary event type
PNG = 2  # ComfyUI's preview image type (1 is JPEG)
MAX_PENDING = 2000
Payload = dict[str, Any] | bytes


def now_ms() -> int:
    return int(time.time() * 1000)


def preview_frame(data_url: str) -> bytes | None:
    """A `data:image/png;base64,...` preview as ComfyUI's binary preview frame."""
    prefix = "data:image/png;base64,"
    if not isinstance(data_url, str) or not data_url.startswith(prefix):
        return None
    try:
        image = base64.b64decode(data_url[len(prefix) :], validate=True)
    except ValueError:
        return None
    return struct.pack(">II", PREVIEW_IMAGE, PNG) + image


@dataclass
class RunTrack:
    """What the bridge remembers of a run while it executes."""

    client_id: str | None
    node: str | None = None
    executed: list[str] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    ended: bool = False


class ComfySocket:
    """One ComfyUI WebSocket client: its own queue, sent in order; dropped when too slow."""

    def __init__(self, ws: web.WebSocketResponse, sid: str) -> None:
        self.ws = ws
        self.sid = sid
        self.pending: asyncio.Queue[Payload] = asyncio.Queue(MAX_PENDING)

    async def send_loop(self) -> None:
        while True:
            payload = await self.pending.get()
            if self.ws.closed:
                return
            try:
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_json(payload)
            except (ConnectionError, RuntimeError):
                return


class _Inlet:
    """What the event hub puts messages into (its clients' `pending`): the bridge, directly."""

    def __init__(self, bridge: ComfyBridge) -> None:
        self.bridge = bridge

    def put_nowait(self, message: dict[str, Any]) -> None:
        try:
            self.bridge.handle(message)
        except Exception:  # one odd event must not stop the stream
            log.exception("cannot translate event %s for ComfyUI clients", message.get("type"))


class _NoSocket:
    """The hub closes its clients' sockets at shutdown; the bridge has none."""

    closed = False

    async def close(self, message: bytes = b"") -> bool:
        return True


class ComfyBridge:
    """Subscribed to the server's EventHub; fans ComfyUI messages out to ComfyUI clients."""

    def __init__(self, st: ServerState) -> None:
        self.st = st
        self.sockets: dict[str, ComfySocket] = {}
        self.runs: dict[str, RunTrack] = {}
        self.client_ids: dict[str, str | None] = {}
        self.pending = _Inlet(self)
        self.ws = _NoSocket()
        self.task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[bool]] = set()

    def attach(self) -> None:
        self.st.hub.clients.add(self)  # type: ignore[arg-type]  # duck-typed hub client

    # -- sending -------------------------------------------------------------------
    def send(self, payload: Payload, sid: str | None = None) -> None:
        targets = (
            list(self.sockets.values())
            if sid is None
            else ([self.sockets[sid]] if sid in self.sockets else [])
        )
        for socket in targets:
            try:
                socket.pending.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("dropping a ComfyUI WebSocket client that does not keep up")
                self.sockets.pop(socket.sid, None)
                closing = asyncio.ensure_future(socket.ws.close(message=b"too slow"))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    def queue_info(self) -> dict[str, Any]:
        counts = self.st.queue.counts()
        return {"exec_info": {"queue_remaining": counts["queued"] + counts["running"]}}

    def send_status(self, sid: str | None = None) -> None:
        data: dict[str, Any] = {"status": self.queue_info()}
        if sid is not None:
            data["sid"] = sid
        self.send({"type": "status", "data": data}, sid)

    def client_of(self, run_id: str) -> str | None:
        if run_id not in self.client_ids:
            run = self.st.queue.get(run_id)
            self.client_ids[run_id] = run.get("client_id") if run else None
            if len(self.client_ids) > 10_000:  # runs long finished
                self.client_ids.pop(next(iter(self.client_ids)))
        return self.client_ids[run_id]

    # -- translating ---------------------------------------------------------------
    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        run_id = message.get("run_id")
        if kind == "run_queued":
            self.client_ids[str(run_id)] = message.get("client_id")
            self.send_status()
            return
        if kind == "run_status":
            self.run_status(str(run_id), message)
            self.send_status()
            return
        if not isinstance(run_id, str):
            return
        track = self.runs.get(run_id)
        if kind == "run_started" or track is None:
            track = self.runs[run_id] = RunTrack(self.client_of(run_id))
        sid = track.client_id
        base = {"prompt_id": run_id}
        node = message.get("node")
        if kind == "run_started":
            self.send({"type": "execution_start", "data": {**base, "timestamp": now_ms()}}, sid)
        elif kind == "node_cached":
            self.send(
                {
                    "type": "execution_cached",
                    "data": {**base, "nodes": [node], "timestamp": now_ms()},
                },
                sid,
            )
            self.executed(track, node, message, base)
        elif kind == "node_started":
            track.node = node
            self.send(
                {"type": "executing", "data": {**base, "node": node, "display_node": node}}, sid
            )
        elif kind == "node_progress":
            self.send(
                {
                    "type": "progress",
                    "data": {
                        **base,
                        "node": node,
                        "value": message.get("step", 0),
                        "max": message.get("total", 0),
                    },
                },
                sid,
            )
            frame = preview_frame(message.get("preview", ""))
            if frame is not None:
                self.send(frame, sid)
        elif kind == "node_finished":
            self.executed(track, node, message, base)
        elif kind == "node_failed" and track.failure is None:
            track.failure = {
                "node_id": node,
                "node_type": message.get("node_type") or "",
                "exception_message": message.get("message") or "",
                "exception_type": "NodeError",
            }
        elif kind == "run_finished":
            succeeded = message.get("status") == RunStatus.SUCCEEDED
            self.end(run_id, track, RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED, None)
        elif kind == "run_cancelled":
            self.end(run_id, track, RunStatus.CANCELLED, None)

    def executed(
        self, track: RunTrack, node: Any, message: dict[str, Any], base: dict[str, Any]
    ) -> None:
        track.executed.append(str(node))
        if "ui" in message:
            self.send(
                {
                    "type": "executed",
                    "data": {
                        **base,
                        "node": node,
                        "display_node": node,
                        "output": comfy_outputs(message["ui"]),
                    },
                },
                track.client_id,
            )

    def run_status(self, run_id: str, message: dict[str, Any]) -> None:
        """The stored outcome (sent after the queue has it): ends a run the executor's events
        did not end (its worker died, ...), then `executing` None, as ComfyUI sends once the
        prompt is in its history."""
        status = message.get("status")
        if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            return
        track = self.runs.pop(run_id, None)
        if track is None:
            if status == RunStatus.CANCELLED:  # cancelled before it started: nothing was sent
                return
            track = RunTrack(self.client_of(run_id))
        if not track.ended:
            self.end(run_id, track, str(status), message.get("error"))
        self.send(
            {
                "type": "executing",
                "data": {"prompt_id": run_id, "node": None, "display_node": None},
            },
            track.client_id,
        )
        self.client_ids.pop(run_id, None)

    def end(self, run_id: str, track: RunTrack, status: str, error: Any) -> None:
        """execution_success, execution_interrupted or execution_error."""
        track.ended = True
        sid = track.client_id
        base = {"prompt_id": run_id, "timestamp": now_ms()}
        if status == RunStatus.SUCCEEDED:
            self.send({"type": "execution_success", "data": base}, sid)
        elif status == RunStatus.CANCELLED:
            self.send(
                {
                    "type": "execution_interrupted",
                    "data": {
                        **base,
                        "node_id": track.node or "",
                        "node_type": "",
                        "executed": track.executed,
                    },
                },
                sid,
            )
        else:
            failure = track.failure or {
                "node_id": track.node or "",
                "node_type": "",
                "exception_type": "RunError",
                "exception_message": (error or {}).get("message", "the run failed")
                if isinstance(error, dict)
                else "the run failed",
            }
            self.send(
                {
                    "type": "execution_error",
                    "data": {
                        **base,
                        **failure,
                        "executed": track.executed,
                        "traceback": [],
                        "current_inputs": {},
                        "current_outputs": {},
                    },
                },
                sid,
            )

    # -- a client ------------------------------------------------------------------
    async def serve(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="this is a WebSocket endpoint (connect with ws://)")
        await ws.prepare(request)
        sid = request.query.get("clientId", "")[:64] or uuid.uuid4().hex
        old = self.sockets.pop(sid, None)
        if old is not None:
            await old.ws.close()
        socket = ComfySocket(ws, sid)
        self.sockets[sid] = socket
        sender = asyncio.create_task(socket.send_loop())
        try:
            self.send_status(sid)
            active = self.st.worker.active
            track = self.runs.get(active.id) if active is not None else None
            if track is not None and track.client_id == sid and track.node is not None:
                self.send(
                    {
                        "type": "executing",
                        "data": {
                            "prompt_id": active.id if active else None,
                            "node": track.node,
                            "display_node": track.node,
                        },
                    },
                    sid,
                )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and '"feature_flags"' in msg.data:
                    self.send({"type": "feature_flags", "data": server_features(self.st)}, sid)
        finally:
            if self.sockets.get(sid) is socket:
                self.sockets.pop(sid, None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def close(self) -> None:
        for socket in list(self.sockets.values()):
            await socket.ws.close(message=b"server shutting down")
        self.sockets.clear()


def server_features(st: ServerState) -> dict[str, Any]:
    """What GET /features and the `feature_flags` message tell ComfyUI's frontend."""
    return {"supports_preview_metadata": False, "max_upload_size": st.config.max_upload_bytes}
