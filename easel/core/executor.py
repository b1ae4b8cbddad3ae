"""Runs a validated workflow: cache lookups, node calls, events, failures and cancellation."""

from __future__ import annotations

import hashlib
import json
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
from easel.core.graph import Link, Plan, PlannedNode, Workflow, validate
from easel.core.node import NodeError
from easel.core.plugins import Registry
from easel.core.status import NodeStatus, RunStatus

log = logging.getLogger("easel.executor")

_HAS_OUTPUTS = frozenset({NodeStatus.EXECUTED, NodeStatus.CACHED})

# Kept for callers that compare with these names; the vocabulary is RunStatus/NodeStatus.
SUCCEEDED, FAILED, CANCELLED = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED


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

    def to_json(self, traceback: bool = False) -> dict[str, Any]:
        """What clients see (the traceback only when asked: it is for logs)."""
        out: dict[str, Any] = {
            "node": self.node,
            "node_type": self.node_type,
            "input": self.input,
            "message": self.message,
        }
        if traceback and self.traceback:
            out["traceback"] = self.traceback
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeFailure:
        return cls(
            str(data["node"]),
            str(data.get("node_type") or ""),
            str(data["message"]),
            data.get("input"),
            str(data.get("traceback") or ""),
        )


@dataclass
class RunResult:
    """The outcome of one run. `timings`: seconds each executed node took."""

    run_id: str
    status: RunStatus
    node_status: dict[str, NodeStatus]
    ui: dict[str, Any]
    values: dict[str, dict[str, Any]]
    failures: list[NodeFailure] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def executed(self) -> list[str]:
        return [n for n, s in self.node_status.items() if s == NodeStatus.EXECUTED]

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.node_status.items() if s == NodeStatus.CACHED]

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        """JSON-able: everything but `values` (live objects stay in the process)."""
        return {
            "run_id": self.run_id,
            "status": str(self.status),
            "seconds": self.seconds,
            "node_status": {n: str(s) for n, s in self.node_status.items()},
            "ui": self.ui,
            "failures": [f.to_json() for f in self.failures],
            "timings": dict(self.timings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(
            str(data["run_id"]),
            RunStatus(data["status"]),
            {n: NodeStatus(s) for n, s in data.get("node_status", {}).items()},
            dict(data.get("ui") or {}),
            {},
            [NodeFailure.from_json(f) for f in data.get("failures", [])],
            float(data.get("seconds", 0.0)),
            dict(data.get("timings") or {}),
        )


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

    def validate(
        self,
        workflow: Workflow | str | bytes | Mapping[str, Any],
        targets: Iterable[str] | None = None,
    ) -> Plan:
        return validate(workflow, self.registry, targets, self._context("", CancelToken()))

    def _context(
        self,
        run_id: str,
        token: CancelToken,
        services: Mapping[str, Any] | None = None,
        output_dir: Path | None = None,
    ) -> Context:
        merged = {**self.services, **services} if services else self.services
        return Context(
            run_id=run_id,
            output_dir=output_dir or self.output_dir,
            services=merged,
            cancel_token=token,
        )

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
        run = _Run(
            self,
            plan,
            on_event,
            cancel or CancelToken(),
            run_id or uuid.uuid4().hex,
            keep_values,
            services,
            Path(output_dir) if output_dir else None,
        )
        return run.execute()


class _Run:
    def __init__(
        self,
        executor: Executor,
        plan: Plan,
        on_event: EventHandler | None,
        token: CancelToken,
        run_id: str,
        keep_values: bool,
        services: Mapping[str, Any] | None,
        output_dir: Path | None,
    ) -> None:
        self.ex = executor
        self.plan = plan
        self.token = token
        self.run_id = run_id
        self.keep_values = keep_values
        self.base_ctx = executor._context(run_id, token, services, output_dir)
        self.status: dict[str, NodeStatus] = dict.fromkeys(plan.order, NodeStatus.PENDING)
        self.keys: dict[str, str] = {}
        self.output_keys: dict[tuple[str, str], str] = {}  # outputs with declared dependencies
        self.values: dict[str, dict[str, Any]] = {}
        self.remaining_consumers = dict(plan.consumers)
        self.ui: dict[str, Any] = {}
        self.failures: list[NodeFailure] = []
        self.timings: dict[str, float] = {}
        self._emit_lock = threading.Lock()
        listeners = list(executor.registry.event_listeners)
        if on_event is not None:
            listeners.insert(0, on_event)
        self._handlers = listeners
        self._event_types = executor.registry.event_types

    def emit(self, type_: str, node: PlannedNode | None = None, **data: Any) -> None:
        if not self._handlers:
            return
        event = Event(
            type_,
            self.run_id,
            node.id if node else None,
            node.node_type.type if node else None,
            data,
        )
        with self._emit_lock:
            for handler in self._handlers:
                try:
                    handler(event)
                except Exception:  # an observer's bug must not break the run
                    log.exception("event handler failed on %s", type_)

    # -- the run -------------------------------------------------------------------
    def execute(self) -> RunResult:
        started = time.perf_counter()
        self.emit(ev.RUN_STARTED, nodes=list(self.plan.order), total=len(self.plan.order))
        cancelled = False
        try:
            if self.ex.max_workers == 1 or self.plan.deferred:
                self.execute_in_order()
            else:
                self.execute_parallel()
        except Cancelled:
            cancelled = True
        seconds = time.perf_counter() - started
        for node_id in self.plan.deferred:
            if self.status[node_id] == NodeStatus.PENDING and not cancelled:
                self.status[node_id] = NodeStatus.UNUSED
        if cancelled:
            for node_id, state in self.status.items():
                if state in (NodeStatus.PENDING, NodeStatus.RUNNING):
                    self.status[node_id] = NodeStatus.CANCELLED
            self.emit(ev.RUN_CANCELLED, reason=self.token.reason, seconds=seconds)
            status = RunStatus.CANCELLED
        else:
            status = RunStatus.FAILED if self.failures else RunStatus.SUCCEEDED
        result = RunResult(
            self.run_id,
            status,
            self.status,
            self.ui,
            self.values,
            self.failures,
            seconds,
            self.timings,
        )
        if not cancelled:
            self.emit(
                ev.RUN_FINISHED,
                status=str(status),
                seconds=seconds,
                executed=len(result.executed),
                cached=len(result.cached),
                failed=[f.node for f in self.failures],
            )
        return result

    def execute_in_order(self) -> None:
        deferred = self.plan.deferred
        for node_id in self.plan.order:
            self.token.raise_if_cancelled()
            if node_id in deferred:
                continue  # runs when a lazy input asks for it
            self.run_node(node_id)

    def run_node(self, node_id: str) -> None:
        job = self.prepare(node_id)
        if job is not None:
            self.finish(node_id, *self.call(node_id, job))

    def execute_parallel(self) -> None:
        waiting = {
            n: {link.node for link in self.plan.nodes[n].links.values()} for n in self.plan.order
        }
        dependents: dict[str, list[str]] = {n: [] for n in self.plan.order}
        for node_id, deps in waiting.items():
            for dep in deps:
                dependents[dep].append(node_id)
        ready = [n for n in self.plan.order if not waiting[n]]
        running: dict[Future[tuple[dict[str, Any] | None, BaseException | None, float]], str] = {}

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
    def prepare(self, node_id: str) -> list[dict[str, Any]] | None:
        """Resolve a node: None when it is skipped, failed or cached, else the keyword
        arguments of each call (one call, or one per item when the node is mapped).

        The hot path (no fingerprint, lazy input or list) computes the key from upstream
        keys alone and gathers input values only on a cache miss."""
        node = self.plan.nodes[node_id]
        node_type = node.node_type
        lazy = node_type.lazy_inputs
        links = node.links
        status = self.status
        for name, link in links.items():
            if status[link.node] not in _HAS_OUTPUTS and name not in lazy:
                self.skip(node, link.node)
                return None
        used: Mapping[str, Link] = links
        kwargs: dict[str, Any] | None = None
        ctx: Context | None = None
        fingerprint = None
        if node_type.fingerprint is not None or lazy or node.mapped or node_type.list_inputs:
            kwargs = self.gather(node)
            ctx = self.node_context(node)
            try:
                if node.mapped or node_type.list_inputs:
                    kwargs = self.listify(node, kwargs)
                if lazy:
                    resolved = self.resolve_lazy(node, ctx, kwargs)
                    if resolved is None:
                        return None
                    used = resolved
                if node_type.fingerprint is not None:
                    fingerprint = node_type.fingerprint(ctx, dict(kwargs))
            except Exception as exc:
                self.fail_early(node, exc)
                return None
        key = self.make_key(node, used, fingerprint)
        if node_type.deterministic:
            cached = self.ex.cache.get(key)
            if cached is not None:
                self.store(node, cached)
                status[node_id] = NodeStatus.CACHED
                self.emit(ev.NODE_CACHED, node, **self.ui_data(node))
                return None
        if kwargs is None:
            kwargs = self.gather(node)
        try:
            if not node.mapped and any(node_type.inputs[name].is_value for name in used):
                self.check_linked_values(node, kwargs)
            calls = self.split_calls(node, kwargs) if node.mapped else [kwargs]
            if node.check_at_run:
                ctx = ctx or self.node_context(node)
                for call_kwargs in calls:
                    self.run_check(node, ctx, call_kwargs)
        except Exception as exc:
            self.fail_early(node, exc)
            return None
        self.add_hidden(node, calls)
        status[node_id] = NodeStatus.RUNNING
        self.emit(ev.NODE_STARTED, node)
        return calls

    def gather(self, node: PlannedNode) -> dict[str, Any]:
        """The node's literals and the values of its (non-lazy) links."""
        kwargs = dict(node.literals)
        values = self.values
        lazy = node.node_type.lazy_inputs
        for name, link in node.links.items():
            if name not in lazy:
                kwargs[name] = values[link.node][link.output]
        return kwargs

    def skip(self, node: PlannedNode, culprit: str) -> None:
        self.status[node.id] = NodeStatus.SKIPPED
        self.emit(ev.NODE_SKIPPED, node, reason=f"upstream node {culprit!r} failed")
        self.release_inputs(node)

    def fail_early(self, node: PlannedNode, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            raise exc
        self.fail(node, exc)
        self.release_inputs(node)

    def make_key(self, node: PlannedNode, used: Mapping[str, Link], fingerprint: str | None) -> str:
        node_type = node.node_type
        keys, output_keys = self.keys, self.output_keys
        if output_keys:
            upstream = {
                name: (output_keys.get((link.node, link.output)) or keys[link.node], link.output)
                for name, link in used.items()
            }
        else:
            upstream = {name: (keys[link.node], link.output) for name, link in used.items()}
        if not node_type.deterministic:
            nonce: Any = f"{self.run_id}:{node.id}"
        elif node_type.output_node:
            nonce = f"output_dir:{self.base_ctx.output_dir}"  # files go there: a new dir re-runs
        else:
            nonce = None
        if node_type.hidden:
            nonce = [nonce, self.hidden_digest(node)]
        key = node_key(
            node_type.type, node_type.version, node.literals, fingerprint, upstream, nonce
        )
        keys[node.id] = key
        for output, names in node_type.output_depends.items():
            output_keys[(node.id, output)] = node_key(
                node_type.type,
                node_type.version,
                {n: v for n, v in node.literals.items() if n in names},
                fingerprint,
                {n: src for n, src in upstream.items() if n in names},
                [nonce, output],
            )
        return key

    def hidden_values(self, node: PlannedNode) -> dict[str, Any]:
        services = self.base_ctx.services
        values: dict[str, Any] = {}
        for name in node.node_type.hidden:
            if name == "node_id":
                values[name] = node.id
            elif name == "workflow":
                workflow = services.get("workflow")
                if workflow is None and self.plan.workflow is not None:
                    workflow = self.plan.workflow.to_json()
                values[name] = workflow
            elif name == "extra_pnginfo":
                values[name] = dict(services.get("extra_pnginfo") or {})
        return values

    def hidden_digest(self, node: PlannedNode) -> str:
        """Hidden values are part of the key: a node that embeds the workflow re-runs when
        the workflow changes, and two nodes that write their own id do not share a result."""
        text = json.dumps(self.hidden_values(node), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def add_hidden(self, node: PlannedNode, calls: list[dict[str, Any]]) -> None:
        if node.node_type.hidden:
            hidden = self.hidden_values(node)
            for call_kwargs in calls:
                call_kwargs.update(hidden)

    def listify(self, node: PlannedNode, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`as_list` inputs get lists (a single value becomes a one-item list)."""
        for name in node.node_type.list_inputs:
            if name not in kwargs:
                continue
            link = node.links.get(name)
            is_list = link is not None and link.output in self.plan.nodes[link.node].list_outputs
            if not is_list:
                kwargs[name] = [kwargs[name]]
        return kwargs

    def split_calls(self, node: PlannedNode, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """One call per item: list inputs advance together, shorter ones repeat their last."""
        node_type = node.node_type
        mapped = [
            name
            for name, link in node.links.items()
            if name not in node_type.list_inputs
            and name in kwargs
            and link.output in self.plan.nodes[link.node].list_outputs
        ]
        count = max(len(kwargs[name]) for name in mapped)
        if any(not kwargs[name] for name in mapped):
            count = 0
        calls = []
        for index in range(count):
            item = dict(kwargs)
            for name in mapped:
                items = kwargs[name]
                item[name] = items[min(index, len(items) - 1)]
            calls.append(item)
        if any(node_type.inputs[name].is_value for name in mapped):
            for item in calls:
                self.check_linked_values(node, item)
        return calls

    def resolve_lazy(
        self, node: PlannedNode, ctx: Context, kwargs: dict[str, Any]
    ) -> dict[str, Link] | None:
        """Ask the node which lazy inputs it needs, run their branches, fill them in.
        Returns the links whose values the node used (for its cache key), or None if a
        needed branch failed (the node is then skipped)."""
        node_type = node.node_type
        assert node_type.needs is not None
        used = {
            name: link for name, link in node.links.items() if name not in node_type.lazy_inputs
        }
        pending = {name: link for name, link in node.links.items() if name in node_type.lazy_inputs}
        for name in pending:
            kwargs[name] = None
        while pending:
            wanted = [name for name in node_type.needs(ctx, dict(kwargs)) or () if name in pending]
            if not wanted:
                break
            for name in wanted:
                link = pending.pop(name)
                self.run_branch(link.node)
                if not self.status[link.node].has_outputs:
                    self.skip(node, link.node)
                    return None
                kwargs[name] = self.values[link.node][link.output]
                used[name] = link
        return used

    def run_branch(self, target: str) -> None:
        """Run a deferred node and whatever it needs that has not run yet, in plan order."""
        needed = {target}
        stack = [target]
        while stack:
            node = self.plan.nodes[stack.pop()]
            for name, link in node.links.items():
                if (
                    name not in node.node_type.lazy_inputs
                    and link.node not in needed
                    and self.status[link.node] == NodeStatus.PENDING
                ):
                    needed.add(link.node)
                    stack.append(link.node)
        for node_id in self.plan.order:
            if node_id in needed and self.status[node_id] == NodeStatus.PENDING:
                self.token.raise_if_cancelled()
                self.run_node(node_id)

    def run_check(self, node: PlannedNode, ctx: Context, kwargs: dict[str, Any]) -> None:
        """A node's `check` with linked values known (at validation it saw only literals)."""
        node_type = node.node_type
        assert node_type.check is not None
        values = {n: v for n, v in kwargs.items() if node_type.inputs[n].is_value}
        found = list(node_type.check(ctx, values) or ())
        if found:
            raise NodeError("; ".join(reason for _, reason in found), found[0][0])

    def check_linked_values(self, node: PlannedNode, kwargs: dict[str, Any]) -> None:
        values = {
            name: kwargs[name]
            for name, spec in node.node_type.inputs.items()
            if spec.is_value
            and name in kwargs
            and not spec.info.as_list
            and kwargs[name] is not None
        }
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

        def custom(type_: str, data: dict[str, Any]) -> None:
            if type_ not in self._event_types:
                raise NodeError(
                    f"event type {type_!r} is not registered (plugins declare "
                    "theirs with the register_event_types hook)"
                )
            self.emit(type_, node, **data)

        return self.base_ctx.child(
            node_id=node.id,
            node_type=node.node_type.type,
            on_progress=progress,
            on_warning=warning,
            on_event=custom,
            logger=logging.getLogger(f"easel.node.{node.node_type.type}"),
        )

    def call(
        self, node_id: str, calls: list[dict[str, Any]]
    ) -> tuple[dict[str, Any] | None, BaseException | None, float]:
        """Run the node (once, or once per item); (outputs, error, seconds)."""
        node = self.plan.nodes[node_id]
        node_type = node.node_type
        started = time.perf_counter()
        ctx = self.node_context(node)
        try:
            if node.mapped:
                outputs = self.call_mapped(node, ctx, calls)
            else:
                outputs = node_type.call(ctx, calls[0])
        except Cancelled:
            raise
        except Exception as exc:
            return None, exc, time.perf_counter() - started
        if node_type.deterministic:
            self.ex.cache.put(self.keys[node_id], outputs)
        return outputs, None, time.perf_counter() - started

    def call_mapped(
        self, node: PlannedNode, ctx: Context, calls: list[dict[str, Any]]
    ) -> dict[str, Any]:
        node_type = node.node_type
        outputs: dict[str, Any] = {name: [] for name in node_type.outputs}
        ui: dict[str, Any] = {}
        for kwargs in calls:
            ctx.check_cancelled()
            one = node_type.call(ctx, kwargs)
            for name in node_type.outputs:
                if name in node_type.list_outputs:
                    outputs[name].extend(one[name])
                else:
                    outputs[name].append(one[name])
            for key, value in (one.get("ui") or {}).items():
                if isinstance(value, list):
                    ui.setdefault(key, []).extend(value)
                else:
                    ui[key] = value
        if ui:
            outputs["ui"] = ui
        return outputs

    def finish(
        self,
        node_id: str,
        outputs: dict[str, Any] | None,
        error: BaseException | None,
        seconds: float,
    ) -> None:
        node = self.plan.nodes[node_id]
        if error is not None or outputs is None:
            self.fail(node, error or RuntimeError("no outputs"))
            self.release_inputs(node)
            return
        self.store(node, outputs)
        self.status[node_id] = NodeStatus.EXECUTED
        self.timings[node_id] = seconds
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
            if self.remaining_consumers[link.node] <= 0 and link.node not in self.plan.targets:
                self.values.pop(link.node, None)

    def ui_data(self, node: PlannedNode) -> dict[str, Any]:
        return {"ui": self.ui[node.id]} if node.id in self.ui else {}

    def fail(self, node: PlannedNode, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, NodeError) else f"{type(exc).__name__}: {exc}"
        failure = NodeFailure(
            node.id,
            node.node_type.type,
            message,
            exc.input if isinstance(exc, NodeError) else None,
            "".join(traceback.format_exception(exc)),
        )
        log.debug("node %s failed:\n%s", node.id, failure.traceback)
        self.failures.append(failure)
        self.status[node.id] = NodeStatus.FAILED
        self.emit(
            ev.NODE_FAILED,
            node,
            message=failure.message,
            input=failure.input,
            traceback=failure.traceback,
        )
