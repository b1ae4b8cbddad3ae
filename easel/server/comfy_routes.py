"""ComfyUI's HTTP protocol over the server's own queue, worker, event hub and folders.

Mounted at ComfyUI's root paths (`/prompt`, `/queue`, `/ws`, `/object_info`, ...) for script
clients, and under `/comfy/api/` (and `/comfy/ws`) for ComfyUI's frontend served at `/comfy/`.
Easel's own `/api/...` routes are never shadowed: ComfyUI's `/api/ROUTE` aliases are not served.
Every route passes the same Host/Origin/token middleware as the rest of the server.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any

from aiohttp import web

from easel import __version__
from easel.core.graph import WorkflowError
from easel.core.status import RunStatus
from easel.server import comfy_files, comfy_userdata
from easel.server.bodies import OFF_LOOP_BYTES, BodyError, read_json
from easel.server.comfy_history import (
    COMFY_KEY,
    EASEL_STATUS,
    JOB_STATUS,
    SECRET_KEYS,
    history_entry,
    job,
    queue_item,
)
from easel.server.comfy_schema import object_info, prompt_to_workflow
from easel.server.comfy_ws import ComfyBridge, server_features
from easel.server.queue import FINAL, QUEUED, RUNNING
from easel.server.redact import redact_paths
from easel.server.state import STATE, ServerState, state

log = logging.getLogger("easel.server.comfy")

FRONTEND_MOUNT = "/comfy"
PREFIXES = ("", FRONTEND_MOUNT + "/api")  # script clients; ComfyUI's frontend at /comfy/
HISTORY_DEFAULT = 200  # GET /history without max_items: the newest runs, at most this many
HISTORY_MAX = 10_000
BRIDGE = web.AppKey("easel_comfy_bridge", ComfyBridge)
NUMBERS = web.AppKey("easel_comfy_numbers", list)  # [itertools.count]: the next `number`
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bridge(request: web.Request) -> ComfyBridge:
    return request.app[BRIDGE]


# -- POST/GET /prompt ---------------------------------------------------------------------------
def prompt_error(exc: WorkflowError, prompt: Any, roots: tuple[str, ...]) -> web.Response:
    """ComfyUI's 400: `error` {type, message, details, extra_info} and `node_errors` by node."""
    node_errors: dict[str, Any] = {}
    general = []
    for problem in exc.problems:
        message = redact_paths(problem.message, roots)
        if problem.node is None:
            general.append(message)
            continue
        entry = prompt.get(problem.node) if isinstance(prompt, Mapping) else None
        class_type = entry.get("class_type") if isinstance(entry, Mapping) else None
        errors = node_errors.setdefault(
            problem.node,
            {
                "errors": [],
                "dependent_outputs": [],
                "class_type": class_type or problem.node_type or "",
            },
        )
        errors["errors"].append(
            {
                "type": "invalid_input" if problem.input else "invalid_node",
                "message": message,
                "details": f"{problem.input}: {message}" if problem.input else message,
                "extra_info": {"input_name": problem.input} if problem.input else {},
            }
        )
    if general:
        error = {
            "type": "invalid_prompt",
            "message": general[0],
            "details": "\n".join(general[1:]),
            "extra_info": {},
        }
    else:
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "; ".join(str(p) for p in exc.problems)[:2000],
            "extra_info": {},
        }
    return web.json_response({"error": error, "node_errors": node_errors}, status=400)


def no_prompt(message: str) -> web.Response:
    return web.json_response(
        {
            "error": {"type": "no_prompt", "message": message, "details": "", "extra_info": {}},
            "node_errors": {},
        },
        status=400,
    )


def prepare_prompt(st: ServerState, prompt: Any) -> tuple[dict[str, Any], Any]:
    """(Easel workflow, validated plan data) of a prompt, or WorkflowError."""
    from easel.server.routes_runs import prepare_run

    workflow = prompt_to_workflow(prompt, st.registry)
    return prepare_run(st, {"workflow": workflow})


async def post_prompt(request: web.Request) -> web.Response:
    st = state(request)
    try:
        body = await read_json(request, st.config.max_body_bytes)
    except BodyError as exc:
        return no_prompt(json.loads(exc.text or "{}").get("error", "unreadable body"))
    if not isinstance(body, dict) or "prompt" not in body:
        return no_prompt('no prompt: send {"prompt": {...}} (ComfyUI\'s API format)')
    prompt = body["prompt"]
    given = body.get("extra_data")
    extra = {
        k: v for k, v in (given if isinstance(given, dict) else {}).items() if k not in SECRET_KEYS
    }
    client_id = str(body["client_id"])[:64] if body.get("client_id") else None
    try:
        number: float = (
            float(body["number"]) if "number" in body else float(next(request.app[NUMBERS][0]))
        )
    except (TypeError, ValueError):
        return no_prompt("'number' must be a number")
    if "number" not in body and body.get("front"):
        number = -number
    loop = asyncio.get_running_loop()
    try:
        if request.content_length is not None and request.content_length > OFF_LOOP_BYTES:
            workflow, plan = await loop.run_in_executor(None, prepare_prompt, st, prompt)
        else:
            workflow, plan = prepare_prompt(st, prompt)
    except WorkflowError as exc:
        return prompt_error(exc, prompt, st.config.private_roots())
    run_id = str(uuid.uuid4())
    number_out: int | float = int(number) if number == int(number) else number
    extra["create_time"] = int(time.time() * 1000)
    extra["client_id"] = client_id
    ui = dict(workflow.get("ui") or {})
    ui[COMFY_KEY] = {"prompt": prompt, "extra_data": extra, "number": number_out}
    workflow["ui"] = ui
    st.worker.plans[run_id] = plan
    try:
        await loop.run_in_executor(
            None, functools.partial(st.queue.add, run_id, workflow, client_id, front=number < 0)
        )
    except BaseException:
        st.worker.plans.pop(run_id, None)
        raise
    st.worker.notify()
    st.hub.publish({"type": "run_queued", "run_id": run_id, "client_id": client_id})
    return web.json_response({"prompt_id": run_id, "number": number_out, "node_errors": {}})


async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(bridge(request).queue_info())


# -- the queue ------------------------------------------------------------------------------
def runs_with(st: ServerState, status: str, limit: int) -> list[dict[str, Any]]:
    """Runs of one status, oldest first, each read with its workflow."""
    rows, _, _ = st.queue.page(limit, status=status)
    runs = [st.queue.get(row["id"], with_workflow=True) for row in reversed(rows)]
    return [run for run in runs if run is not None]


async def get_queue(request: web.Request) -> web.Response:
    st = state(request)

    def read() -> dict[str, Any]:
        return {
            "queue_running": [queue_item(r, st.registry) for r in runs_with(st, RUNNING, 10)],
            "queue_pending": [
                queue_item(r, st.registry) for r in runs_with(st, QUEUED, HISTORY_MAX)
            ],
        }

    return web.json_response(await asyncio.get_running_loop().run_in_executor(None, read))


async def json_body(request: web.Request) -> dict[str, Any]:
    """A small JSON object body; an empty body is {}."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    from easel.server.bodies import parse_json

    if len(raw) > state(request).config.max_body_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=state(request).config.max_body_bytes, actual_size=len(raw)
        )
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BodyError(400, "send a JSON object")
    return value


def cancel(st: ServerState, run_id: str) -> str | None:
    """Cancel a queued or running run: "cancelled", "cancelling", or None (not found)."""
    if st.queue.cancel_queued(run_id):
        st.worker.plans.pop(run_id, None)
        st.hub.publish({"type": "run_status", "run_id": run_id, "status": RunStatus.CANCELLED})
        return RunStatus.CANCELLED
    if st.worker.cancel_running(run_id):
        return "cancelling"
    return None


def id_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BodyError(400, "'delete' must be a list of prompt ids")
    return value


async def post_queue(request: web.Request) -> web.Response:
    st = state(request)
    body = await json_body(request)
    if body.get("clear"):
        for run in runs_with(st, QUEUED, HISTORY_MAX):
            cancel(st, run["id"])
    for run_id in id_list(body.get("delete", [])):
        found = st.queue.get(run_id)
        if found is not None and found["status"] == QUEUED:
            cancel(st, run_id)
    return web.json_response({})


async def post_interrupt(request: web.Request) -> web.Response:
    st = state(request)
    body = await json_body(request)
    active = st.worker.active
    wanted = body.get("prompt_id")
    if active is not None and (wanted is None or wanted == active.id):
        st.worker.cancel_running(active.id)
    return web.json_response({})


# -- history and jobs -----------------------------------------------------------------------
def finished_runs(st: ServerState, limit: int) -> list[dict[str, Any]]:
    """The newest finished runs, oldest first, each with its workflow."""
    found: list[dict[str, Any]] = []
    for status in FINAL:
        rows, _, _ = st.queue.page(limit, status=status)
        found.extend(rows)
    found.sort(key=lambda row: row["seq"], reverse=True)
    runs = [st.queue.get(row["id"], with_workflow=True) for row in reversed(found[:limit])]
    return [run for run in runs if run is not None]


async def get_history(request: web.Request) -> web.Response:
    st = state(request)
    try:
        limit = int(request.query.get("max_items", HISTORY_DEFAULT))
    except ValueError:
        raise BodyError(400, "max_items must be an integer") from None
    limit = min(max(limit, 0), HISTORY_MAX)

    def read() -> dict[str, Any]:
        return (
            {run["id"]: history_entry(run, st.registry) for run in finished_runs(st, limit)}
            if limit
            else {}
        )

    return web.json_response(await asyncio.get_running_loop().run_in_executor(None, read))


async def get_history_item(request: web.Request) -> web.Response:
    st = state(request)
    run = st.queue.get(request.match_info["prompt_id"], with_workflow=True)
    if run is None or run["status"] not in FINAL:
        return web.json_response({})
    return web.json_response({run["id"]: history_entry(run, st.registry)})


async def post_history(request: web.Request) -> web.Response:
    await json_body(request)
    return web.json_response(
        {
            "error": "Easel keeps every run's record in its queue database (trimmed to the "
            "server's history limit); clearing or deleting history entries is not "
            "supported"
        },
        status=501,
    )


async def get_jobs(request: web.Request) -> web.Response:
    st = state(request)
    try:
        limit = min(max(int(request.query.get("limit", 200)), 1), HISTORY_MAX)
        offset = max(int(request.query.get("offset", 0)), 0)
    except ValueError:
        raise BodyError(400, "limit and offset must be integers") from None
    wanted = [s for s in request.query.get("status", "").split(",") if s] or list(EASEL_STATUS)
    unknown = [s for s in wanted if s not in EASEL_STATUS]
    if unknown:
        raise BodyError(400, f"unknown job status {unknown[0]!r}; use {', '.join(EASEL_STATUS)}")
    order = request.query.get("sort_order", "desc")

    def read() -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        total = 0
        for status in wanted:
            found, _, count = st.queue.page(offset + limit, status=EASEL_STATUS[status])
            rows.extend(found)
            total += count
        rows.sort(key=lambda row: row["seq"], reverse=order != "asc")
        page = rows[offset : offset + limit]
        # A list row drops a failure's details; ComfyUI's job shows the failing node.
        page = [
            (st.queue.get(row["id"]) or row) if row["status"] == RunStatus.FAILED else row
            for row in page
        ]
        return {
            "jobs": [job(row, st.registry) for row in page],
            "pagination": {
                "offset": offset,
                "limit": limit,
                "total": total,
                "has_more": offset + len(page) < total,
            },
        }

    return web.json_response(await asyncio.get_running_loop().run_in_executor(None, read))


async def get_job(request: web.Request) -> web.Response:
    st = state(request)
    run = st.queue.get(request.match_info["job_id"], with_workflow=True)
    if run is None:
        raise web.HTTPNotFound(text=f"no job {request.match_info['job_id'][:80]!r}")
    return web.json_response(job(run, st.registry, detail=True))


async def post_job_cancel(request: web.Request) -> web.Response:
    st = state(request)
    run_id = request.match_info["job_id"]
    outcome = cancel(st, run_id)
    if outcome is None:
        run = st.queue.get(run_id)
        if run is None:
            raise web.HTTPNotFound(text=f"no job {run_id[:80]!r}")
        raise web.HTTPConflict(
            text=f"job {run_id[:80]!r} has already {JOB_STATUS.get(run['status'], run['status'])}"
        )
    return web.json_response({"id": run_id, "status": outcome})


async def post_jobs_cancel(request: web.Request) -> web.Response:
    st = state(request)
    body = await json_body(request)
    ids = body.get("job_ids", [])
    if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
        raise BodyError(400, "'job_ids' must be a list of job ids")
    return web.json_response({"cancelled": [i for i in ids if cancel(st, i) is not None]})


# -- what the server has ---------------------------------------------------------------------
async def get_object_info(request: web.Request) -> web.Response:
    st = state(request)
    info = await asyncio.get_running_loop().run_in_executor(
        None, object_info, st.registry, comfy_files.upload_names(st)
    )
    wanted = request.match_info.get("node_class")
    if wanted is not None:
        info = {wanted: info[wanted]} if wanted in info else {}
    return web.json_response(info)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def memory() -> tuple[int, int]:
    try:
        import psutil

        mem = psutil.virtual_memory()
        return int(mem.total), int(mem.available)
    except ImportError:
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        free = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
        return pages * size, free * size


async def system_stats(request: web.Request) -> web.Response:
    total, free = memory()
    return web.json_response(
        {
            "system": {
                "os": os.name,
                "ram_total": total,
                "ram_free": free,
                "comfyui_version": f"easel {__version__}",
                "easel_version": __version__,
                "required_frontend_version": "",
                "installed_templates_version": "",
                "required_templates_version": "",
                "python_version": sys.version,
                "pytorch_version": package_version("torch"),
                "embedded_python": False,
                "argv": ["easel", "serve"],
                "platform": platform.platform(),
            },
            # The models live in the worker process; the server does not import torch.
            "devices": [
                {
                    "name": "see the worker process",
                    "type": "cpu",
                    "index": 0,
                    "vram_total": 0,
                    "vram_free": 0,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }
    )


def model_names(kind: str) -> list[str]:
    from easel.models.discovery import kind_names

    return kind_names(kind)


async def embeddings(request: web.Request) -> web.Response:
    names = await asyncio.get_running_loop().run_in_executor(None, model_names, "embeddings")
    return web.json_response([os.path.splitext(n)[0] for n in names])


async def model_kinds(request: web.Request) -> web.Response:
    from easel.models.model_paths import KINDS

    return web.json_response(sorted({f for folders in KINDS.values() for f in folders}))


async def models_of(request: web.Request) -> web.Response:
    from easel.models.model_paths import KIND_ALIASES

    folder = request.match_info["folder"]
    kind = KIND_ALIASES.get(folder)
    if kind is None or folder not in KIND_ALIASES or folder != folder.lower():
        raise web.HTTPNotFound(text=f"no model folder {folder[:60]!r}")
    names = await asyncio.get_running_loop().run_in_executor(None, model_names, kind)
    return web.json_response(names)


async def extensions(request: web.Request) -> web.Response:
    return web.json_response([])  # Easel plugins ship assets for Easel's editor, not ComfyUI's


async def features(request: web.Request) -> web.Response:
    return web.json_response(server_features(state(request)))


async def no_entries(request: web.Request) -> web.Response:
    """Routes where ComfyUI lists what custom nodes add (translations, workflow templates,
    global subgraphs): Easel plugins add none of these to ComfyUI's frontend."""
    return web.json_response({})


async def websocket(request: web.Request) -> web.StreamResponse:
    return await bridge(request).serve(request)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/ws", websocket),
    ("POST", "/prompt", post_prompt),
    ("GET", "/prompt", get_prompt),
    ("GET", "/queue", get_queue),
    ("POST", "/queue", post_queue),
    ("POST", "/interrupt", post_interrupt),
    ("GET", "/history", get_history),
    ("GET", "/history/{prompt_id}", get_history_item),
    ("POST", "/history", post_history),
    ("GET", "/jobs", get_jobs),
    ("GET", "/jobs/{job_id}", get_job),
    ("POST", "/jobs/cancel", post_jobs_cancel),
    ("POST", "/jobs/{job_id}/cancel", post_job_cancel),
    ("GET", "/object_info", get_object_info),
    ("GET", "/object_info/{node_class}", get_object_info),
    ("GET", "/system_stats", system_stats),
    ("GET", "/embeddings", embeddings),
    ("GET", "/models", model_kinds),
    ("GET", "/models/{folder}", models_of),
    ("GET", "/extensions", extensions),
    ("GET", "/features", features),
    ("GET", "/i18n", no_entries),
    ("GET", "/workflow_templates", no_entries),
    ("GET", "/global_subgraphs", no_entries),
    *comfy_files.ROUTES,
    *comfy_userdata.ROUTES,
]


def paths() -> list[tuple[str, str]]:
    """Every (method, path) this module serves: the security tests walk them all."""
    return [
        *((method, prefix + path) for prefix in PREFIXES for method, path, _ in ROUTES),
        ("GET", FRONTEND_MOUNT + "/ws"),
    ]  # the frontend opens <its folder>/ws


def add_comfy_routes(app: web.Application) -> None:
    """Mount ComfyUI's protocol (and its frontend, when installed) on the server's app."""
    app[NUMBERS] = [itertools.count()]
    for prefix in PREFIXES:
        for method, path, handler in ROUTES:
            app.router.add_route(method, prefix + path, handler)
    app.router.add_get(FRONTEND_MOUNT + "/ws", websocket)
    from easel.server.comfy_frontend import add_frontend

    add_frontend(app)

    async def attach(app: web.Application) -> None:
        st = app[STATE]
        app[BRIDGE].attach()
        counts = st.queue.counts()
        app[NUMBERS][0] = itertools.count(sum(counts.values()))

    async def close(app: web.Application) -> None:
        await app[BRIDGE].close()

    app[BRIDGE] = ComfyBridge(app[STATE])
    app.on_startup.append(attach)
    app.on_shutdown.append(close)
