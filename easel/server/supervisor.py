"""Runs execute in a supervised worker process, so nothing a node does can stop the server.

The server process keeps the queue, the API and the events; the worker process (see
`worker_process.py`) holds the models and runs one plan at a time. Cancel is cooperative first
(the run's cancel token); a node that has not returned `cancel_grace` seconds later has its
worker killed and restarted, and the run ends cancelled. A run whose worker dies (a node called
`os._exit`, crashed the interpreter, or was killed for memory) is retried up to `retries` times,
then failed with the reason. A worker that cannot start is restarted with a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from easel.core.executor import NodeFailure
from easel.core.status import NodeStatus, RunStatus
from easel.server.recipe import WorkerRecipe, plan_from_data, plan_to_data
from easel.server.worker import ActiveRun, RunError, RunOutcome, RunWorker, WorkerDied

log = logging.getLogger("easel.server.worker")

START_TIMEOUT = 180.0
MAX_BACKOFF = 30.0


class WorkerProcess:
    """One worker process and the thread that reads its messages onto the event loop."""

    def __init__(
        self, recipe: WorkerRecipe, loop: asyncio.AbstractEventLoop, on_message: Any, on_exit: Any
    ) -> None:
        parent_end, child_end = multiprocessing.Pipe(duplex=True)
        self.conn: Connection = parent_end
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "easel.server.worker_process",
                str(child_end.fileno()),
                str(os.getpid()),
            ],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        child_end.close()
        self.pid = self.process.pid
        self.ready = loop.create_future()
        self._loop = loop
        self._send_lock = threading.Lock()
        self.send(recipe)
        threading.Thread(
            target=self._read,
            args=(on_message, on_exit),
            daemon=True,
            name=f"easel-worker-{self.pid}",
        ).start()

    def send(self, message: Any) -> None:
        with self._send_lock:
            self.conn.send(message)

    def _read(self, on_message: Any, on_exit: Any) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # a message that cannot be unpickled
                log.error("unreadable message from the worker process: %s", exc)
                continue
            self._loop.call_soon_threadsafe(on_message, self, message)
        code = self.process.wait()
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
            self._loop.call_soon_threadsafe(on_exit, self, code)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker process stopped"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with code {code}"


class ProcessRunWorker(RunWorker):
    """RunWorker whose runs execute in a supervised worker process."""

    def __init__(
        self,
        *args: Any,
        recipe: WorkerRecipe,
        cancel_grace: float = 10.0,
        prestart: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.prestart = prestart
        self.cancel_grace = cancel_grace
        self.process: WorkerProcess | None = None
        self.restarts = 0
        self._outcome: asyncio.Future[tuple[str, Any]] | None = None
        self._outcome_process: WorkerProcess | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._failed_starts = 0
        self._restart_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        if self.prestart:  # models load on the first run; the imports happen now
            self._spawn()

    async def stop(self) -> None:
        self.stopping = True
        if self.active is not None:  # a normal stop: the run goes back first in line, and
            # this start does not count against its retries
            self.queue.requeue(self.active.id, count_attempt=False)
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(OSError, ValueError):
                process.send({"op": "stop"})
            process.kill()
        if self._restart_task is not None:
            self._restart_task.cancel()
        await super().stop()

    def _spawn(self) -> WorkerProcess:
        assert self._loop is not None
        self.process = WorkerProcess(self.recipe, self._loop, self._on_message, self._on_exit)
        log.info("worker process %d started", self.process.pid)
        return self.process

    def _on_message(self, process: WorkerProcess, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            self._failed_starts = 0
            if not process.ready.done():
                process.ready.set_result(True)
        elif op == "events":
            active = self.active
            if active is not None and process is self._outcome_process:
                for item in message["items"]:
                    if item.get("run_id") == active.id:
                        self._deliver(active, item)
        elif op == "done":
            outcome = self._outcome
            if outcome is not None and not outcome.done() and process is self._outcome_process:
                outcome.set_result(("done", message))

    def _on_exit(self, process: WorkerProcess, code: int) -> None:
        if not process.ready.done():
            process.ready.set_exception(
                WorkerDied(f"{describe_exit(code)} while starting (see the server log)")
            )
            process.ready.exception()  # retrieved: no "never retrieved" warning
            self._failed_starts += 1
        outcome = self._outcome
        if outcome is not None and not outcome.done() and process is self._outcome_process:
            outcome.set_result(("died", code))
        if process is self.process:
            self.process = None
            if not self.stopping:
                log.warning("%s (pid %d)", describe_exit(code), process.pid)
                self.restarts += 1
                self._restart_task = asyncio.ensure_future(self._restart_later())

    async def _restart_later(self) -> None:
        pause = min(MAX_BACKOFF, 0.5 * (2**self._failed_starts) - 0.5)
        if pause:
            await asyncio.sleep(pause)
        if self.process is None and not self.stopping:
            self._spawn()

    async def _ready_process(self) -> WorkerProcess:
        process = self.process
        if process is None or not process.alive():
            if self._restart_task is not None and not self._restart_task.done():
                await self._restart_task
            process = self.process or self._spawn()
        try:
            await asyncio.wait_for(asyncio.shield(process.ready), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise WorkerDied(
                f"the worker process did not start within {START_TIMEOUT:.0f} s"
            ) from None
        return process

    # -- one run -------------------------------------------------------------------
    def needs_workflow(self, run_id: str) -> bool:
        return run_id not in self.plans

    def cancel_running(self, run_id: str) -> bool:
        if not super().cancel_running(run_id):
            return False
        if self._outcome_process is not None:  # else `_run` sends it once the run is sent
            self._send_cancel(run_id, self._outcome_process)
        return True

    def _send_cancel(self, run_id: str, process: WorkerProcess) -> None:
        """Cooperative first; the worker is killed if the run has not ended `cancel_grace`
        seconds later."""
        with contextlib.suppress(OSError, ValueError):
            process.send({"op": "cancel", "id": run_id, "reason": "cancelled by the user"})
        assert self._loop is not None
        if self._kill_timer is None:
            self._kill_timer = self._loop.call_later(
                self.cancel_grace, self._kill_stuck, run_id, process
            )

    def _kill_stuck(self, run_id: str, process: WorkerProcess) -> None:
        if self.active is not None and self.active.id == run_id and process.alive():
            log.warning(
                "run %s did not stop within %.1f s of its cancel: killing worker process %d",
                run_id,
                self.cancel_grace,
                process.pid,
            )
            process.kill()

    async def _run(self, run: dict[str, Any], active: ActiveRun) -> RunOutcome:
        loop = asyncio.get_running_loop()
        plan = self.plans.pop(run["id"], None)
        if plan is None:  # queued before a restart (or not kept): validate again, off the loop
            if "workflow" not in run:
                found = await loop.run_in_executor(None, self.queue.get, run["id"], True)
                run["workflow"] = (found or {}).get("workflow") or {}
            plan = await loop.run_in_executor(
                None, lambda: plan_to_data(self.executor.validate(run["workflow"]))
            )
        planned = time.perf_counter()
        process = await self._ready_process()
        if active.token.cancelled:  # cancelled while the worker was starting
            nodes = plan_from_data(plan, self.executor.registry).order
            return RunOutcome(RunStatus.CANCELLED, dict.fromkeys(nodes, NodeStatus.CANCELLED), {})
        self._outcome = loop.create_future()
        self._outcome_process = process
        try:
            # The worker takes the workflow (for the files' metadata) from the plan when the
            # run was claimed without it.
            services = {"workflow": run["workflow"]} if "workflow" in run else {}
            message = {"op": "run", "id": run["id"], "plan": plan, "services": services}
            with contextlib.suppress(OSError, ValueError):  # if it died, its exit answers
                await loop.run_in_executor(None, process.send, message)
            if active.token.cancelled:
                self._send_cancel(run["id"], process)
            sent = time.perf_counter()
            kind, payload = await self._outcome
            log.debug(
                "run %s: worker ready and plan sent in %.3f s, run in %.3f s",
                run["id"],
                sent - planned,
                time.perf_counter() - sent,
            )
        finally:
            self._outcome = None
            self._outcome_process = None
            if self._kill_timer is not None:
                self._kill_timer.cancel()
                self._kill_timer = None
        if kind == "died":
            if active.token.cancelled:
                return self._cancelled(run["id"], active)
            running = [
                f"{node_id!r} ({entry.get('type')})"
                for node_id, entry in active.nodes.items()
                if entry.get("status") == RunStatus.RUNNING
            ]
            where = f" while running node {running[0]}" if running else ""
            raise WorkerDied(f"{describe_exit(payload)}{where}")
        if "error" in payload:
            raise RunError(payload["error"]["message"])
        result = payload["result"]
        failures = [
            NodeFailure(f["node"], f["node_type"], f["message"], f["input"])
            for f in result["failures"]
        ]
        if result["status"] == RunStatus.CANCELLED and result.get("reason"):
            active.token.reason = active.token.reason or result["reason"]
        return RunOutcome(
            result["status"], result["node_status"], result["ui"], failures, result["seconds"]
        )

    def _cancelled(self, run_id: str, active: ActiveRun) -> RunOutcome:
        unfinished = (NodeStatus.PENDING, NodeStatus.RUNNING)
        status = {
            node_id: (
                NodeStatus.CANCELLED
                if entry.get("status") in unfinished
                else str(entry.get("status"))
            )
            for node_id, entry in active.nodes.items()
        }
        reason = active.token.reason or "cancelled"
        active.token.reason = (
            f"{reason}; the node did not stop within {self.cancel_grace:g} s, "
            "so its worker process was restarted"
        )
        return RunOutcome(RunStatus.CANCELLED, status, dict(active.outputs))
