"""What every route handler reaches: settings, registry, executor, queue, event hub, worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from easel.core.executor import Executor
from easel.core.plugins import Registry
from easel.server.config import ServerConfig
from easel.server.events import EventHub
from easel.server.plan_memo import PlanMemo
from easel.server.queue import RunQueue
from easel.server.worker import RunWorker


@dataclass
class ServerState:
    """One per application; handlers get it with `state(request)`."""

    config: ServerConfig
    registry: Registry
    executor: Executor
    queue: RunQueue
    hub: EventHub
    worker: RunWorker
    plans: PlanMemo = field(default_factory=PlanMemo)  # plans of identical submissions


STATE = web.AppKey("easel_state", ServerState)


def state(request: web.Request) -> ServerState:
    return request.app[STATE]
