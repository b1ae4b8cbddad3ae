"""The worker process: holds the models and the output cache, runs one plan at a time.

Started by the server as `python -m easel.server.worker_process FD`, where FD is its end of a
socket pair. Messages are pickled dicts (`multiprocessing.connection`); the server sends the
recipe first, then `run` / `cancel` / `stop`. The worker answers `ready`, batches of `events`,
and `done` per run. Images never cross the pipe: output nodes write files, events carry names
and small PNG previews. If the server goes away, the worker exits (pipe EOF, and on Linux a
parent-death signal, in case a node holds the interpreter).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from easel.core.status import NodeStatus, RunStatus

FLUSH_SECONDS = 0.02
FLUSH_EVENTS = 500

log = logging.getLogger("easel.server.worker")


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the server dies, whatever this process is doing."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the server died before the line above
        os._exit(0)


class Outbox:
    """Events go out in batches: one pipe message per FLUSH_SECONDS or FLUSH_EVENTS."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self._flush_locked()
            self.conn.send(message)

    def event(self, message: dict[str, Any], urgent: bool = False) -> None:
        """Queue an event; `urgent` ones go at once (a node starting: if it then ends the
        process, the server knows which node did)."""
        with self.lock:
            self.pending.append(message)
            if (
                urgent
                or len(self.pending) >= FLUSH_EVENTS
                or time.monotonic() - self.last >= FLUSH_SECONDS
            ):
                self._flush_locked()

    def flush(self) -> None:
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self.last = time.monotonic()
        if self.pending:
            batch, self.pending = self.pending, []
            self.conn.send({"op": "events", "items": batch})


_BAD_UI: dict[int, tuple[Any, str]] = {}  # id -> (the ui object, kept alive; the problem)


def _ui_problem(kind: str, ui: Any) -> str | None:
    """Why a node's `ui` cannot go to clients as JSON. A cached node hands back the very
    object that was checked when it ran, so only fresh outputs are encoded to check."""
    from easel.core import events as ev

    known = _BAD_UI.get(id(ui))
    if known is not None and known[0] is ui:
        return known[1]
    if kind == ev.NODE_CACHED:
        return None
    problem = _json_problem(ui)
    if problem is not None:
        if len(_BAD_UI) > 1000:
            _BAD_UI.clear()
        _BAD_UI[id(ui)] = (ui, problem)
    return problem


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def serve(conn: Connection) -> None:
    from easel.core.context import CancelToken
    from easel.server.recipe import WorkerRecipe

    recipe: WorkerRecipe = conn.recv()
    logging.getLogger().setLevel(recipe.log_level)
    executor = recipe.build()
    outbox = Outbox(conn)
    runs: queue.Queue[dict[str, Any] | None] = queue.Queue()
    current: dict[str, CancelToken] = {}

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the server is gone
            op = message.get("op")
            if op == "run":
                current[message["id"]] = CancelToken()
                runs.put(message)
            elif op == "cancel":
                token = current.get(message["id"])
                if token is not None:
                    token.cancel(message.get("reason") or "cancelled")
            elif op == "stop":
                runs.put(None)
                return

    def flusher() -> None:
        while True:
            time.sleep(FLUSH_SECONDS * 2)
            try:
                outbox.flush()
            except (OSError, ValueError):
                os._exit(0)

    threading.Thread(target=read, name="easel-worker-read", daemon=True).start()
    threading.Thread(target=flusher, name="easel-worker-flush", daemon=True).start()
    outbox.send({"op": "ready", "pid": os.getpid()})
    while True:
        message = runs.get()
        if message is None:
            outbox.flush()
            return
        reply = execute(executor, outbox, message, current[message["id"]])
        current.pop(message["id"], None)
        try:
            outbox.send(reply)
        except Exception as exc:  # the result itself cannot travel: say so instead
            outbox.send(
                {
                    "op": "done",
                    "id": message["id"],
                    "error": {
                        "message": f"the run's result could not be sent to the server: {exc}"
                    },
                }
            )


_PLANS: OrderedDict[bytes, tuple[Any, Any]] = OrderedDict()
PLANS_KEPT = 4


def _plan(data: bytes, registry: Any) -> tuple[Any, Any]:
    """(plan, its workflow as JSON) from the server's bytes. The same workflow submitted again
    gives the same bytes: its plan is reused (the executor never changes a plan), so a big
    workflow run again costs neither the unpickling nor the workflow's JSON."""
    from easel.server.recipe import plan_from_data

    key = hashlib.blake2b(data, digest_size=16).digest()
    found = _PLANS.get(key)
    if found is not None:
        _PLANS.move_to_end(key)
        return found
    plan = plan_from_data(data, registry)
    model = getattr(plan, "workflow", None)
    entry = (plan, model.to_json() if model is not None else None)
    _PLANS[key] = entry
    while len(_PLANS) > PLANS_KEPT:
        _PLANS.popitem(last=False)
    return entry


def execute(executor: Any, outbox: Outbox, message: dict[str, Any], token: Any) -> dict[str, Any]:
    """Run one plan; the `done` reply (never raises, whatever a node does short of exiting)."""
    from easel.core import events as ev
    from easel.core.events import Event
    from easel.server.events import encode_preview

    run_id = message["id"]
    running: dict[str, Any] = {}
    bad_ui: dict[str, tuple[str, str]] = {}

    def on_event(event: Event) -> None:
        if event.type == ev.NODE_STARTED:
            running.update(node=event.node_id, type=event.node_type)
        data = event.to_json()
        problem = _ui_problem(event.type, data["ui"]) if "ui" in data else None
        if problem is not None:
            reason = (
                f"its `ui` output is not JSON-serialisable ({problem}); return plain "
                "numbers, strings, lists and dicts there"
            )
            bad_ui[str(event.node_id)] = (str(event.node_type), reason)
            data = {
                **{k: v for k, v in data.items() if k != "ui"},
                "type": ev.NODE_FAILED,
                "message": reason,
                "input": None,
            }
        trace = data.pop("traceback", None)
        if trace:
            log.info("run %s, node %s failed:\n%s", event.run_id, event.node_id, trace)
        if event.type == ev.NODE_PROGRESS:
            preview = encode_preview(event.data.get("preview"))
            if preview is not None:
                data["preview"] = preview
        outbox.event(data, urgent=event.type == ev.NODE_STARTED)

    try:
        started = time.perf_counter()
        plan, workflow = _plan(message["plan"], executor.registry)
        services = dict(message.get("services") or {})
        if "workflow" not in services and workflow is not None:
            services["workflow"] = workflow
        planned = time.perf_counter()
        result = executor.run(
            plan, on_event=on_event, cancel=token, run_id=run_id, services=services
        )
        log.debug(
            "run %s: plan rebuilt in %.3f s, executed in %.3f s",
            run_id,
            planned - started,
            time.perf_counter() - planned,
        )
    except (SystemExit, KeyboardInterrupt) as exc:  # a node tried to end the process
        return {
            "op": "done",
            "id": run_id,
            "error": {
                "message": (
                    f"node {running.get('node')!r} ({running.get('type')}) raised "
                    f"{type(exc).__name__}; nodes must not end the process"
                )
            },
        }
    except Exception as exc:  # a bug outside any node: the run fails, the worker goes on
        log.error("run %s raised:\n%s", run_id, traceback.format_exc())
        return {"op": "done", "id": run_id, "error": {"message": f"{type(exc).__name__}: {exc}"}}
    failures = [
        {"node": f.node, "node_type": f.node_type, "input": f.input, "message": f.message}
        for f in result.failures
    ]
    node_status = {n: str(state) for n, state in result.node_status.items()}
    ui = dict(result.ui)
    for node_id, (node_type, reason) in bad_ui.items():
        node_status[node_id] = NodeStatus.FAILED
        ui.pop(node_id, None)
        failures.append({"node": node_id, "node_type": node_type, "input": None, "message": reason})
    status = str(result.status)
    if bad_ui and status == RunStatus.SUCCEEDED:
        status = RunStatus.FAILED
    return {
        "op": "done",
        "id": run_id,
        "result": {
            "status": status,
            "node_status": node_status,
            "ui": ui,
            "seconds": result.seconds,
            "reason": token.reason,
            "failures": failures,
        },
    }


def main(argv: list[str]) -> None:
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the server, which stops us
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conn = Connection(int(argv[1]))
    try:
        serve(conn)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # no interpreter teardown: models and threads just go


if __name__ == "__main__":
    main(sys.argv)
