"""POST/GET /api/runs and GET/DELETE /api/runs/{id}: submit, page the history, inspect, cancel."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from easel.core.graph import Problem, WorkflowError
from easel.core.plugins import Registry
from easel.core.status import RunStatus
from easel.server.bodies import OFF_LOOP_BYTES, read_json
from easel.server.config import ServerConfig
from easel.server.paths import safe_file_name
from easel.server.queue import QUEUED, RUNNING
from easel.server.redact import redact_paths
from easel.server.security import json_error
from easel.server.state import state
from easel.workflow_files import to_easel

routes = web.RouteTableDef()
log = logging.getLogger("easel.server")

MAX_PAGE = 200


def workflow_problems(exc: WorkflowError, roots: tuple[str, ...] = ()) -> web.Response:
    """400 listing every problem; absolute paths of this machine shortened (see redact)."""
    problems = [p.to_json() for p in exc.problems]
    for problem in problems:
        problem["message"] = redact_paths(str(problem["message"]), roots)
    return json_error(400, str(exc).splitlines()[0].rstrip(":"), problems=problems)


def convert(data: Any) -> dict[str, Any]:
    """An Easel workflow dict from any supported format, or WorkflowError."""
    try:
        return to_easel(data)
    except ImportError:
        raise WorkflowError(
            [
                Problem(
                    "this looks like a ComfyUI workflow, but the ComfyUI importer is not available "
                    "in this installation"
                )
            ]
        ) from None
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
    ) as exc:  # a structure no converter expected: the client's error
        log.info("cannot convert a workflow", exc_info=True)
        raise WorkflowError(
            [
                Problem(
                    f"cannot read this workflow: its structure is not an Easel or ComfyUI workflow "
                    f"({type(exc).__name__}: {str(exc)[:200]})"
                )
            ]
        ) from None


def file_input_problems(
    workflow: dict[str, Any], registry: Registry, config: ServerConfig
) -> list[Problem]:
    """Image-upload inputs may only name a file in the upload folder: no paths, no escapes.

    Literal names are checked here, written plainly or as {"value": ...}; names that come
    through a link are checked by the node when the run reaches it (the same rule)."""
    problems = []
    for node_id, spec in (workflow.get("nodes") or {}).items():
        node_type = registry.get(spec.get("type", "")) if isinstance(spec, dict) else None
        if node_type is None:
            continue
        for name, value in (spec.get("inputs") or {}).items():
            input_spec = node_type.inputs.get(name)
            if input_spec is None or input_spec.info.widget != "image_upload":
                continue
            if isinstance(value, dict) and set(value) == {"value"}:
                value = value["value"]
            if not isinstance(value, str):
                continue  # a link: checked at run time
            problem = upload_name_problem(value, config)
            if problem:
                problems.append(
                    Problem(problem, node=node_id, input=name, node_type=node_type.type)
                )
    return problems


def upload_name_problem(value: str, config: ServerConfig) -> str | None:
    """Why `value` is not the name of an uploaded image, or None."""
    if not value:
        return "no image chosen: upload one (POST /api/uploads) or pick an uploaded one"
    if safe_file_name(value) is None:
        return (
            f"{value[:200]!r} is not the name of an uploaded image: upload it first "
            "(POST /api/uploads) and use the name it gets; folders are not allowed"
        )
    if not (config.input_dir / value).is_file():
        return f"no uploaded image named {value!r}; upload it first"
    return None


def prepare_run(st: Any, body: Any) -> tuple[dict[str, Any], bytes]:
    """(workflow, plan data) of a submitted body, or WorkflowError; runs off the event loop.

    The plan validated here is the one the worker runs: nothing is validated twice."""
    if not isinstance(body, dict) or not isinstance(body.get("workflow"), dict):
        raise WorkflowError([Problem('send {"workflow": {...}} (an Easel or ComfyUI workflow)')])
    key = st.plans.key(body["workflow"])
    kept = st.plans.get(key)  # the same workflow again, validated before (plan_memo.py)
    if kept is not None:
        return kept
    workflow = convert(body["workflow"])
    plan = st.executor.validate(workflow)
    problems = file_input_problems(workflow, st.registry, st.config)
    if problems:
        raise WorkflowError(problems)
    from easel.server.recipe import plan_to_data

    data = plan_to_data(plan)
    st.plans.put(key, workflow, plan, data)
    return workflow, data


@routes.post("/api/runs")
async def submit(request: web.Request) -> web.Response:
    st = state(request)
    body = await read_json(request, st.config.max_body_bytes)
    loop = asyncio.get_running_loop()
    try:
        if request.content_length is not None and request.content_length > OFF_LOOP_BYTES:
            workflow, plan = await loop.run_in_executor(None, prepare_run, st, body)
        else:
            workflow, plan = prepare_run(st, body)
    except WorkflowError as exc:
        return workflow_problems(exc, st.config.private_roots())
    client_id = body.get("client_id")
    run_id = uuid.uuid4().hex
    st.worker.plans[run_id] = plan
    try:
        run = await loop.run_in_executor(
            None, st.queue.add, run_id, workflow, str(client_id)[:64] if client_id else None
        )
    except BaseException:
        st.worker.plans.pop(run_id, None)
        raise
    st.worker.notify()
    st.hub.publish({"type": "run_queued", "run_id": run_id, "client_id": run["client_id"]})
    return web.json_response(
        {"id": run_id, "status": QUEUED, "position": st.queue.position(run_id)}, status=201
    )


@routes.get("/api/runs")
async def history(request: web.Request) -> web.Response:
    st = state(request)
    try:
        limit = min(max(int(request.query.get("limit", 50)), 1), MAX_PAGE)
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        return json_error(400, "limit and before must be integers")
    status = request.query.get("status") or None
    runs, cursor, total = st.queue.page(limit, before, status)
    active = st.worker.active
    for run in runs:
        if active is not None and active.id == run["id"] and run["status"] == RUNNING:
            run["summary"] = live_summary(active)
    return web.json_response(
        {"runs": runs, "next": cursor, "total": total, "counts": st.queue.counts()}
    )


@routes.get("/api/runs/{id}")
async def get_run(request: web.Request) -> web.Response:
    st = state(request)
    run = st.queue.get(request.match_info["id"], with_workflow=True)
    if run is None:
        return json_error(404, f"no run {request.match_info['id']!r}")
    overlay(st.worker.active, run)
    if run["status"] == QUEUED:
        run["position"] = st.queue.position(run["id"])
    return web.json_response(run)


def overlay(active: Any, run: dict[str, Any]) -> None:
    """The live node states of the run being executed (the database has them at the end)."""
    if active is not None and active.id == run["id"] and run["status"] == RUNNING:
        run["nodes"] = {k: dict(v) for k, v in active.nodes.items()}
        run["outputs"] = dict(active.outputs)


def live_summary(active: Any) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for entry in active.nodes.values():
        counts[entry.get("status", "?")] = counts.get(entry.get("status", "?"), 0) + 1
    return {"nodes": len(active.nodes), "states": counts}


@routes.delete("/api/runs/{id}")
async def cancel(request: web.Request) -> web.Response:
    st = state(request)
    run_id = request.match_info["id"]
    if st.queue.cancel_queued(run_id):
        st.worker.plans.pop(run_id, None)
        st.hub.publish({"type": "run_status", "run_id": run_id, "status": RunStatus.CANCELLED})
        return web.json_response({"id": run_id, "status": RunStatus.CANCELLED})
    if st.worker.cancel_running(run_id):
        return web.json_response({"id": run_id, "status": "cancelling"}, status=202)
    run = st.queue.get(run_id)
    if run is None:
        return json_error(404, f"no run {run_id!r}")
    return json_error(409, f"run {run_id!r} has already {run['status']}", status=run["status"])
