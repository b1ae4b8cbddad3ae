"""Takes queued runs one at a time, runs them, streams their events and stores the outcome.

`RunWorker` runs them on a thread of this process (the cluster mode, whose runs execute
remotely, builds on it); `easel.server.supervisor.ProcessRunWorker` in a worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from easel.core import events as ev
from easel.core.context import CancelToken
from easel.core.events import Event
from easel.core.executor import Executor, NodeFailure, RunResult
from easel.core.graph import WorkflowError
from easel.core.status import NodeStatus, RunStatus
from easel.server.events import EventHub, encode_preview
from easel.server.queue import CANCELLED, FAILED, RunQueue
from easel.server.redact import redact_paths

log = logging.getLogger("easel.server.worker")

_NODE_STATE = {
    ev.NODE_STARTED: NodeStatus.RUNNING,
    ev.NODE_PROGRESS: NodeStatus.RUNNING,
    ev.NODE_CACHED: NodeStatus.CACHED,
    ev.NODE_FINISHED: NodeStatus.EXECUTED,
    ev.NODE_FAILED: NodeStatus.FAILED,
    ev.NODE_SKIPPED: NodeStatus.SKIPPED,
}


class WorkerDied(Exception):
    """The process running a run ended before the run did (a node exited or crashed it)."""


@dataclass
class RunOutcome:
    """How a run ended, as the server stores it (a RunResult without the live values)."""

    status: str
    node_status: dict[str, str]
    ui: dict[str, Any]
    failures: list[NodeFailure] = field(default_factory=list)
    seconds: float = 0.0


class PlanMemo(dict[str, Any]):
    """Plans validated at submission, kept for the worker until their run starts; past
    `max_bytes` in all, a plan is not kept and its run is validated again when it starts."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.size = 0

    def __setitem__(self, run_id: str, plan: Any) -> None:
        size = len(plan) if isinstance(plan, bytes | bytearray) else 0
        if self.size + size > self.max_bytes:
            return
        self.pop(run_id, None)
        self.size += size
        super().__setitem__(run_id, plan)

    def pop(self, run_id: str, default: Any = None) -> Any:  # type: ignore[override]
        plan = super().pop(run_id, default)
        if plan is not default and isinstance(plan, bytes | bytearray):
            self.size -= len(plan)
        return plan


class RunError(Exception):
    """The run could not be executed (not a node's failure); the message says why."""


@dataclass
class ActiveRun:
    """The run being executed: what GET /api/runs/{id} shows before it is stored."""

    id: str
    token: CancelToken = field(default_factory=CancelToken)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == ev.RUN_STARTED:
            for node_id in message.get("nodes", []):
                self.nodes.setdefault(node_id, {"status": "pending"})
            return
        node_id = message.get("node")
        state = _NODE_STATE.get(kind)
        if node_id is None or state is None:
            return
        entry = self.nodes.setdefault(node_id, {})
        entry["status"] = state
        entry["type"] = message.get("node_type")
        if kind == ev.NODE_PROGRESS:
            entry["step"], entry["total"] = message.get("step"), message.get("total")
        elif kind == ev.NODE_FAILED:
            entry["message"], entry["input"] = message.get("message"), message.get("input")
        elif kind == ev.NODE_SKIPPED:
            entry["message"] = message.get("reason")
        if "ui" in message:
            self.outputs[node_id] = message["ui"]


class RunWorker:
    """One run at a time (the models and the GPU are shared), in submission order."""

    def __init__(
        self,
        queue: RunQueue,
        executor: Executor,
        hub: EventHub,
        retries: int = 2,
        private_roots: tuple[str, ...] = (),
    ) -> None:
        self.queue = queue
        self.retries = retries
        self.private_roots = private_roots
        self.plans: dict[str, Any] = PlanMemo()  # run id -> the plan validated at submission
        self.executor = executor
        self.hub = hub
        self.active: ActiveRun | None = None
        self.wake = asyncio.Event()
        self.stopping = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-run")
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        interrupted, failed = self.queue.requeue_interrupted(self.retries + 1)
        if interrupted:
            log.warning(
                "re-queued %d run(s) interrupted by a previous shutdown: %s",
                len(interrupted),
                ", ".join(interrupted),
            )
        if failed:
            log.warning(
                "run(s) interrupted %d times, now failed: %s", self.retries + 1, ", ".join(failed)
            )
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._serve(), name="easel-run-worker")

    async def stop(self) -> None:
        self.stopping = True
        if self.active is not None:
            self.active.token.cancel("server shutting down")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=False, cancel_futures=True)

    def notify(self) -> None:
        """A run was queued."""
        self.wake.set()

    def cancel_running(self, run_id: str) -> bool:
        if self.active is None or self.active.id != run_id:
            return False
        self.active.token.cancel("cancelled by the user")
        return True

    # -- the loop ------------------------------------------------------------------
    async def _serve(self) -> None:
        while not self.stopping:
            self.wake.clear()
            run = await asyncio.get_running_loop().run_in_executor(
                None, self.queue.claim_next, self.needs_workflow
            )
            if run is None:
                await self.wake.wait()
                continue
            try:
                await self._execute(run)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one run stop the queue
                log.exception("run %s failed in the server", run["id"])

    async def _execute(self, run: dict[str, Any]) -> None:
        active = ActiveRun(run["id"])
        self.active = active
        self.hub.publish({"type": "run_status", "run_id": run["id"], "status": RunStatus.RUNNING})
        loop = asyncio.get_running_loop()
        try:
            result: RunOutcome | RunResult | None = await self._run(run, active)
            error: Any = None
        except WorkflowError as exc:
            result, error = (
                None,
                {"message": "invalid workflow", "problems": [p.to_json() for p in exc.problems]},
            )
        except WorkerDied as exc:
            self.active = None
            if run.get("attempts", 1) <= self.retries and not self.stopping:
                log.warning(
                    "run %s: %s; retrying (attempt %d of %d)",
                    run["id"],
                    exc,
                    run.get("attempts", 1) + 1,
                    self.retries + 1,
                )
                self.queue.retry(run["id"])
                self.hub.publish(
                    {
                        "type": "run_status",
                        "run_id": run["id"],
                        "status": RunStatus.QUEUED,
                        "retry": str(exc),
                    }
                )
                return
            tries = run.get("attempts", 1)
            result, error = (
                None,
                {"message": f"{exc}; gave up after {tries} attempt{'s' if tries != 1 else ''}"},
            )
        except RunError as exc:
            result, error = None, {"message": str(exc)}
        except Exception as exc:
            log.exception("run %s raised", run["id"])
            result, error = None, {"message": f"{type(exc).__name__}: {exc}"}
        finally:
            self.active = None
        if self.stopping and active.token.cancelled:
            self.queue.requeue(run["id"], count_attempt=False)
            return
        if result is None:
            status, nodes, outputs = FAILED, active.nodes, active.outputs
        else:
            status = RunStatus(result.status)
            nodes = {
                node_id: {**active.nodes.get(node_id, {}), "status": str(state)}
                for node_id, state in result.node_status.items()
            }
            outputs = dict(result.ui)
            if result.failures:
                failures = [
                    {
                        "node": f.node,
                        "node_type": f.node_type,
                        "input": f.input,
                        "message": self.redact(f.message),
                    }
                    for f in result.failures
                ]
                count = len(failures)
                error = {
                    "message": self.redact(
                        f"{count} node{'s' if count != 1 else ''} failed: "
                        + "; ".join(str(f) for f in result.failures[:20])
                    ),
                    "failures": failures,
                }
            elif status == CANCELLED:
                error = {"message": active.token.reason or "cancelled"}
        if error is not None:
            error["message"] = self.redact(error["message"])
        await loop.run_in_executor(
            None, self.queue.finish, run["id"], status, nodes, outputs, error
        )
        self.hub.publish(
            {
                "type": "run_status",
                "run_id": run["id"],
                "status": status,
                "outputs": outputs,
                "error": error,
            }
        )

    def needs_workflow(self, run_id: str) -> bool:
        """Whether running `run_id` needs its workflow read back from the queue."""
        return True

    async def _run(self, run: dict[str, Any], active: ActiveRun) -> RunOutcome | RunResult:
        """Execute one claimed run (here: on this process's thread pool)."""
        self.plans.pop(run["id"], None)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_blocking, run, active)

    def redact(self, message: str) -> str:
        """A message for clients: absolute paths of this machine shortened (the log has them)."""
        return redact_paths(message, self.private_roots)

    def _run_blocking(self, run: dict[str, Any], active: ActiveRun) -> RunResult:
        loop = self._loop
        assert loop is not None

        def on_event(event: Event) -> None:
            message = event.to_json()
            trace = message.pop("traceback", None)
            if trace:
                log.info("run %s, node %s failed:\n%s", event.run_id, event.node_id, trace)
            if event.type == ev.NODE_PROGRESS:
                preview = encode_preview(event.data.get("preview"))
                if preview is not None:
                    message["preview"] = preview
            loop.call_soon_threadsafe(self._deliver, active, message)

        services = {"workflow": run["workflow"]}
        return self.executor.run(
            run["workflow"],
            on_event=on_event,
            cancel=active.token,
            run_id=run["id"],
            services=services,
        )

    def _deliver(self, active: ActiveRun, message: dict[str, Any]) -> None:
        if message.get("type") == ev.NODE_FAILED and isinstance(message.get("message"), str):
            message["message"] = self.redact(message["message"])
        active.apply(message)
        self.hub.publish(message)
