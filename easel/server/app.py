"""Builds the aiohttp application: routes, middlewares, queue, worker and their lifecycle."""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp import web

from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.plugins import Registry
from easel.server import (
    routes_events,
    routes_files,
    routes_nodes,
    routes_runs,
    routes_workflows,
)
from easel.server.comfy_routes import add_comfy_routes
from easel.server.config import ServerConfig
from easel.server.events import EventHub
from easel.server.queue import RunQueue
from easel.server.routes_files import TEMPORARY_SUFFIXES
from easel.server.routes_static import add_static_routes, security_headers
from easel.server.security import Guard, json_errors
from easel.server.state import STATE, ServerState
from easel.server.worker import RunWorker

MULTIPART_OVERHEAD = 256 * 1024
log = logging.getLogger("easel.server")


def remove_leftovers(config: ServerConfig) -> int:
    """Hidden temporary files (`.name.part`, `.name.tmp`) that a killed writer left behind.

    One server owns a data folder (its queue is there), so at start-up nothing is writing.
    """
    removed = 0
    for folder in (config.input_dir, config.user_workflows_dir, config.outputs):
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*"):
            if path.name.endswith(TEMPORARY_SUFFIXES) and path.is_file() and not path.is_symlink():
                try:
                    path.unlink()
                    removed += 1
                except OSError as exc:
                    log.warning("cannot remove %s: %s", path, exc)
    return removed


def create_app(
    config: ServerConfig,
    registry: Registry,
    executor: Executor | None = None,
    cluster: Any = None,
    runner_config: Any = None,
) -> web.Application:
    """The whole server; the worker starts with the app and stops with it.

    With `cluster` (a Dask scheduler address or Client) queued runs execute on the
    cluster's workers, each built from `runner_config` (plugins, models directory).
    """
    if config.exposed and not config.token:
        raise ValueError(f"serving on {config.host} (not loopback) requires a token")
    config.make_dirs()
    if executor is None:
        executor = Executor(registry, OutputCache(), output_dir=config.outputs)
    executor.output_dir = config.outputs
    executor.services["input_dir"] = config.input_dir
    executor.services["budget"] = config.budget
    removed = remove_leftovers(config)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write", removed)
    guard = Guard(config)
    app = web.Application(
        middlewares=[json_errors, guard.middleware],
        client_max_size=max(config.max_body_bytes, config.max_upload_bytes) + MULTIPART_OVERHEAD,
    )
    queue = RunQueue(config.db_path, config.history_limit)
    hub = EventHub()
    common: dict[str, Any] = {"retries": config.retries, "private_roots": config.private_roots()}
    if cluster is not None:
        from easel.batch.runner import RunnerConfig
        from easel.server.cluster_worker import ClusterRunWorker

        worker: RunWorker = ClusterRunWorker(
            queue,
            executor,
            hub,
            cluster=cluster,
            runner_config=runner_config or RunnerConfig(),
            **common,
        )
    elif config.worker_process and sys.platform == "win32":
        log.warning("runs execute in the server process on Windows (no worker process yet)")
        worker = RunWorker(queue, executor, hub, **common)
    elif config.worker_process:
        from easel.server.recipe import WorkerRecipe
        from easel.server.supervisor import ProcessRunWorker

        worker = ProcessRunWorker(
            queue,
            executor,
            hub,
            **common,
            recipe=WorkerRecipe.describe(registry, executor),
            cancel_grace=config.cancel_grace,
            prestart=config.prestart_worker,
        )
    else:
        worker = RunWorker(queue, executor, hub, **common)
    app[STATE] = ServerState(config, registry, executor, queue, hub, worker)
    for module in (routes_nodes, routes_runs, routes_files, routes_workflows, routes_events):
        app.add_routes(module.routes)
    add_comfy_routes(app)  # ComfyUI's protocol and frontend, over the same queue and hub
    add_static_routes(app, registry)
    for route in registry.routes:  # plugin routes: /api/plugins/<plugin>/..., behind the guard
        app.router.add_route(route.method, route.url, route.handler)
    app.on_response_prepare.append(security_headers)

    async def start_worker(app: web.Application) -> None:
        await worker.start()

    async def close_clients(app: web.Application) -> None:
        await hub.close()

    async def stop(app: web.Application) -> None:
        await worker.stop()
        queue.close()

    app.on_startup.append(start_worker)
    app.on_shutdown.append(close_clients)
    app.on_cleanup.append(stop)
    return app
