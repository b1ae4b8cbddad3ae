"""Runs a validated workflow: cache lookups, node calls, events, failures and cancellation."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from easel.core import events as ev
from easel.core.cache import OutputCache, node_key
from easel.core.context import Cancelled, CancelToken, Context
from easel.core.events import Event, EventHandler
from easel.core.graph import Plan, PlannedNode, Workflow, validate
from easel.core.node import NodeError
from easel.core.plugins import Registry

log = logging.getLogger("easel.executor")

SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"


@dataclass
class NodeFailure:
    """Why a node failed: what the user sees, and the traceback for logs."""

    node: str
    node_type: str
    message: str
    input: str | None = None
    traceback: str = ""

    def __str__(self) -> str:
        where = f"node {self.node!r} ({self.node_type})"
        if self.input:
            where += f", input {self.input!r}"
        return f"{where}: {self.message}"


@dataclass
class RunResult:
    """The outcome of one run."""

    run_id: str
    status: str
    node_status: dict[str, str]
    ui: dict[str, Any]
    values: dict[str, dict[str, Any]]
    failures: list[NodeFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def executed(self) -> list[str]:
        return [n for n, s in self.node_status.items() if s == "executed"]

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.node_status.items() if s == "cached"]


class Executor:
    """Runs workflows against a registry, keeping one output cache across runs.

    `services` is handed to every node's context (the model manager under "models").
    With `max_workers > 1` independent branches run on threads; results never depend on it.
    """

    def __init__(
        self,
        registry: Registry,
        cache: OutputCache | None = None,
        *,
        output_dir: Path | str = "output",
        services: Mapping[str, Any] | None = None,
        max_workers: int = 1,
    ) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.output_dir = Path(output_dir)
        self.services = dict(services or {})
        self.max_workers = max(1, max_workers)

    def validate(self, workflow: Workflow | str | bytes | Mapping[str, Any],
                 targets: Iterable[str] | None = None) -> Plan:
        return validate(workflow, self.registry, targets, self._context("", CancelToken()))

    def _context(self, run_id: str, token: CancelToken,
                 services: Mapping[str, Any] | None = None,
                 output_dir: Path | None = None) -> Context:
        merged = {**self.services, **services} if services else self.services
        return Context(run_id=run_id, output_dir=output_dir or self.output_dir,
                       services=merged, cancel_token=token)

    def run(
        self,
        workflow: Workflow | Plan | str | bytes | Mapping[str, Any],
        *,
        targets: Iterable[str] | None = None,
        on_event: EventHandler | None = None,
        cancel: CancelToken | None = None,
        run_id: str | None = None,
        keep_values: bool = False,
        services: Mapping[str, Any] | None = None,
        output_dir: Path | str | None = None,
    ) -> RunResult:
        """Run a workflow (raises WorkflowError before anything runs if it is invalid).

        `services` adds to or overrides the executor's services for this run only (the
        server's upload folder, the workflow being run for SaveImage's metadata, ...);
        `output_dir` overrides where this run's output nodes write.
        """
        plan = workflow if isinstance(workflow, Plan) else self.validate(workflow, targets)
        run = _Run(self, plan, on_event, cancel or CancelToken(), run_id or uuid.uuid4().hex,
                   keep_values, services, Path(output_dir) if output_dir else None)
        return run.execute()


class _Run:
    def __init__(self, executor: Executor, plan: Plan, on_event: EventHandler | None,
                 token: CancelToken, run_id: str, keep_values: bool,
                 services: Mapping[str, Any] | None, output_dir: Path | None) -> None:
        self.ex = executor
        self.plan = plan
        self.token = token
        self.run_id = run_id
        self.keep_values = keep_values
        self.base_ctx = executor._context(run_id, token, services, output_dir)
        self.status: dict[str, str] = dict.fromkeys(plan.order, "pending")
        self.keys: dict[str, str] = {}
        self.values: dict[str, dict[str, Any]] = {}
        self.remaining_consumers = dict(plan.consumers)
        self.ui: dict[str, Any] = {}
        self.failures: list[NodeFailure] = []
        self._emit_lock = threading.Lock()
        self._handler = on_event

    def emit(self, type_: str, node: PlannedNode | None = None, **data: Any) -> None:
        if self._handler is None:
            return
        event = Event(type_, self.run_id, node.id if node else None,
                      node.node_type.type if node else None, data)
        with self._emit_lock:
            try:
                self._handler(event)
            except Exception:  # an observer's bug must not break the run
                log.exception("event handler failed on %s", type_)

    # -- the run -------------------------------------------------------------------
    def execute(self) -> RunResult:
        started = time.perf_counter()
        self.emit(ev.RUN_STARTED, nodes=list(self.plan.order), total=len(self.plan.order))
        cancelled = False
        try:
            if self.ex.max_workers == 1:
                for node_id in self.plan.order:
                    self.token.raise_if_cancelled()
                    job = self.prepare(node_id)
                    if job is not None:
                        self.finish(node_id, *self.call(node_id, job))
            else:
                self.execute_parallel()
        except Cancelled:
            cancelled = True
        seconds = time.perf_counter() - started
        if cancelled:
            for node_id, state in self.status.items():
                if state in ("pending", "running"):
                    self.status[node_id] = "cancelled"
            self.emit(ev.RUN_CANCELLED, reason=self.token.reason, seconds=seconds)
            status = CANCELLED
        else:
            status = FAILED if self.failures else SUCCEEDED
        result = RunResult(self.run_id, status, self.status, self.ui,
                           self.values, self.failures, seconds)
        if not cancelled:
            self.emit(ev.RUN_FINISHED, status=status, seconds=seconds,
                      executed=len(result.executed), cached=len(result.cached),
                      failed=[f.node for f in self.failures])
        return result

    def execute_parallel(self) -> None:
        waiting = {n: {link.node for link in self.plan.nodes[n].links.values()}
                   for n in self.plan.order}
        dependents: dict[str, list[str]] = {n: [] for n in self.plan.order}
        for node_id, deps in waiting.items():
            for dep in deps:
                dependents[dep].append(node_id)
        ready = [n for n in self.plan.order if not waiting[n]]
        running: dict[Future[tuple[dict[str, Any] | None, BaseException | None]], str] = {}

        def done(node_id: str) -> None:
            for child in dependents[node_id]:
                waiting[child].discard(node_id)
                if not waiting[child]:
                    ready.append(child)

        with ThreadPoolExecutor(self.ex.max_workers, thread_name_prefix="easel-node") as pool:
            try:
                while ready or running:
                    while ready:
                        self.token.raise_if_cancelled()
                        node_id = ready.pop(0)
                        job = self.prepare(node_id)
                        if job is None:
                            done(node_id)
                        else:
                            running[pool.submit(self.call, node_id, job)] = node_id
                    if not running:
                        continue
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        node_id = running.pop(future)
                        self.finish(node_id, *future.result())
                        done(node_id)
            except Cancelled:
                self.token.cancel(self.token.reason or "cancelled")
                for future in running:
                    future.result()
                raise

    # -- one node ------------------------------------------------------------------
    def prepare(self, node_id: str) -> dict[str, Any] | None:
        """Resolve a node: skipped, cached (None) or a kwargs dict to call it with."""
        node = self.plan.nodes[node_id]
        node_type = node.node_type
        blocked = [link.node for link in node.links.values()
                   if self.status[link.node] not in ("executed", "cached")]
        if blocked:
            self.status[node_id] = "skipped"
            self.emit(ev.NODE_SKIPPED, node, reason=f"upstream node {blocked[0]!r} failed")
            self.release_inputs(node)
            return None
        ctx = self.node_context(node)
        try:
            fingerprint = (node_type.fingerprint(ctx, dict(node.literals))
                           if node_type.fingerprint else None)
        except Exception as exc:
            self.fail(node, exc)
            self.release_inputs(node)
            return None
        upstream = {name: (self.keys[link.node], link.output) for name, link in node.links.items()}
        if not node_type.deterministic:
            nonce: str | None = f"{self.run_id}:{node_id}"
        elif node_type.output_node:
            nonce = f"output_dir:{self.base_ctx.output_dir}"  # files go there: a new dir re-runs
        else:
            nonce = None
        key = node_key(node_type.type, node_type.version, node.literals, fingerprint, upstream,
                       nonce)
        self.keys[node_id] = key
        if node_type.deterministic:
            cached = self.ex.cache.get(key)
            if cached is not None:
                self.store(node, cached)
                self.status[node_id] = "cached"
                self.emit(ev.NODE_CACHED, node, **self.ui_data(node))
                return None
        kwargs = dict(node.literals)
        for name, link in node.links.items():
            kwargs[name] = self.values[link.node][link.output]
        if any(node_type.inputs[name].is_value for name in node.links):
            try:
                self.check_linked_values(node, kwargs)
            except NodeError as exc:
                self.fail(node, exc)
                self.release_inputs(node)
                return None
        self.status[node_id] = "running"
        self.emit(ev.NODE_STARTED, node)
        return kwargs

    def check_linked_values(self, node: PlannedNode, kwargs: dict[str, Any]) -> None:
        values = {name: kwargs[name] for name, spec in node.node_type.inputs.items()
                  if spec.is_value and name in kwargs}
        try:
            model = node.node_type.literal_model.model_validate(values)
        except pydantic.ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise NodeError(f"linked value {err['msg']}", str(err["loc"][0])) from None
        kwargs.update({name: getattr(model, name) for name in values})

    def node_context(self, node: PlannedNode) -> Context:
        def progress(step: int, total: int, preview: Any) -> None:
            self.emit(ev.NODE_PROGRESS, node, step=step, total=total, preview=preview)

        def warning(message: str) -> None:
            self.emit(ev.NODE_WARNING, node, message=message)

        return self.base_ctx.child(node_id=node.id, node_type=node.node_type.type,
                                   on_progress=progress, on_warning=warning,
                                   logger=logging.getLogger(f"easel.node.{node.node_type.type}"))

    def call(self, node_id: str, kwargs: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, BaseException | None]:
        node = self.plan.nodes[node_id]
        started = time.perf_counter()
        try:
            outputs = node.node_type.call(self.node_context(node), kwargs)
        except Cancelled:
            raise
        except Exception as exc:
            return None, exc
        if node.node_type.deterministic:
            self.ex.cache.put(self.keys[node_id], outputs)
        outputs.setdefault("__seconds__", time.perf_counter() - started)
        return outputs, None

    def finish(self, node_id: str, outputs: dict[str, Any] | None,
               error: BaseException | None) -> None:
        node = self.plan.nodes[node_id]
        if error is not None or outputs is None:
            self.fail(node, error or RuntimeError("no outputs"))
            self.release_inputs(node)
            return
        seconds = outputs.pop("__seconds__", 0.0)
        self.store(node, outputs)
        self.status[node_id] = "executed"
        self.emit(ev.NODE_FINISHED, node, seconds=seconds, **self.ui_data(node))

    def store(self, node: PlannedNode, outputs: dict[str, Any]) -> None:
        self.values[node.id] = outputs
        if "ui" in outputs:
            self.ui[node.id] = outputs["ui"]
        self.release_inputs(node)

    def release_inputs(self, node: PlannedNode) -> None:
        """Forget upstream outputs once their last consumer has them (the cache may keep them)."""
        if self.keep_values:
            return
        for link in node.links.values():
            self.remaining_consumers[link.node] -= 1
            if (self.remaining_consumers[link.node] <= 0
                    and link.node not in self.plan.targets):
                self.values.pop(link.node, None)

    def ui_data(self, node: PlannedNode) -> dict[str, Any]:
        return {"ui": self.ui[node.id]} if node.id in self.ui else {}

    def fail(self, node: PlannedNode, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, NodeError) else f"{type(exc).__name__}: {exc}"
        failure = NodeFailure(node.id, node.node_type.type, message,
                              exc.input if isinstance(exc, NodeError) else None,
                              "".join(traceback.format_exception(exc)))
        log.debug("node %s failed:\n%s", node.id, failure.traceback)
        self.failures.append(failure)
        self.status[node.id] = "failed"
        self.emit(ev.NODE_FAILED, node, message=failure.message, input=failure.input,
                  traceback=failure.traceback)
