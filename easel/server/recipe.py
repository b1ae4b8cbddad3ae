"""What the worker process needs to rebuild the server's registry and executor, as plain data.

The worker is a fresh interpreter (not a fork: a forked aiohttp process would inherit its
sockets, threads and, on a GPU, a CUDA context that cannot be used after fork). So the server
describes how its registry was made (built-ins, entry points, plugin files and modules, node
types registered in process by import path) and which executor settings and services to
recreate. Validated plans travel pickled, with node types by name, and are rebuilt against
the worker's registry without validating again.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.graph import Plan
from easel.core.node import NodeType
from easel.core.plugins import BUILTIN_PLUGIN, Registry, load_plugins

log = logging.getLogger("easel.server.worker")

IN_PROCESS_SOURCES = ("", "registered in process")


@dataclass(frozen=True)
class WorkerRecipe:
    """How to build, in another process, an executor equivalent to the server's."""

    plugins: tuple[str, ...] = ()  # plugin files and modules, as `load_plugins` takes them
    builtins: bool = True
    entry_points: bool = False
    allowed: tuple[str, ...] = ()  # the third-party plugins the server loaded (and no others)
    extra_nodes: tuple[tuple[str, str, str], ...] = ()  # (plugin, module, attribute)
    cache_bytes: int = 2 * 1024**3
    disk_cache_dir: str | None = None
    max_workers: int = 1
    output_dir: str = "output"
    services: dict[str, Any] = field(default_factory=dict)  # plain data only
    with_models: bool = False
    sys_path: tuple[str, ...] = ()
    log_level: int = logging.WARNING

    @classmethod
    def describe(cls, registry: Registry, executor: Executor) -> WorkerRecipe:
        """The recipe for `registry` and `executor` as this process has them."""
        plugins: list[str] = []
        extra: list[tuple[str, str, str]] = []
        builtins = entry_points = False
        allowed: list[str] = []
        for name, info in registry.plugins.items():
            source = info.source
            if source == "built-in" or name == BUILTIN_PLUGIN:
                builtins = True
                continue
            allowed.append(name)
            if source.startswith("entry point "):
                entry_points = True
            elif source.startswith("module "):
                plugins.append(source.removeprefix("module "))
            elif source in IN_PROCESS_SOURCES:
                extra.extend(_importable(name, registry, info.nodes))
            else:
                plugins.append(source)
        services: dict[str, Any] = {}
        for key, value in executor.services.items():
            if key == "models":
                continue
            try:
                pickle.dumps(value)
            except Exception:
                log.warning("service %r cannot be handed to the worker process", key)
                continue
            services[key] = value
        disk = getattr(executor.cache, "disk", None)
        return cls(
            plugins=tuple(plugins),
            builtins=builtins,
            entry_points=entry_points,
            allowed=tuple(allowed),
            extra_nodes=tuple(extra),
            cache_bytes=executor.cache.max_bytes,
            disk_cache_dir=str(disk.root) if disk is not None else None,
            max_workers=executor.max_workers,
            output_dir=str(executor.output_dir),
            services=services,
            with_models="models" in executor.services,
            sys_path=tuple(p for p in sys.path if isinstance(p, str)),
            log_level=logging.getLogger().getEffectiveLevel(),
        )

    def build(self) -> Executor:
        """The executor (in the worker process)."""
        for entry in reversed(self.sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        environ = {"EASEL_ALLOW_PLUGINS": ",".join(self.allowed)} if self.allowed else {}
        registry = load_plugins(
            self.plugins, environ=environ, entry_points=self.entry_points, builtins=self.builtins
        )
        for plugin, module, attribute in self.extra_nodes:
            registry.add_node(plugin, getattr(importlib.import_module(module), attribute))
        for error in registry.errors:
            log.warning("worker: %s", error.splitlines()[0])
        cache = OutputCache(self.cache_bytes)
        if self.disk_cache_dir:
            from pathlib import Path

            from easel.core.diskcache import DiskStore

            cache.disk = DiskStore(Path(self.disk_cache_dir), codecs=registry.codecs)
        services = dict(self.services)
        if self.with_models:
            from easel.models.manager import ModelManager

            services["models"] = ModelManager.from_environment()
        return Executor(
            registry,
            cache,
            output_dir=self.output_dir,
            services=services,
            max_workers=self.max_workers,
        )


def _importable(plugin: str, registry: Registry, names: list[str]) -> list[tuple[str, str, str]]:
    """Node types added in process, by the import path that gives them back."""
    found = []
    for name in names:
        node_type = registry.nodes.get(name)
        if node_type is None:
            continue
        module, attribute = node_type.fn.__module__, node_type.fn.__qualname__
        try:
            same = getattr(importlib.import_module(module), attribute, None) is node_type
        except Exception:
            same = False
        if same:
            found.append((plugin, module, attribute))
        else:
            log.warning(
                "node type %r (plugin %r) was registered in process and cannot be "
                "imported by the worker process; load it from a plugin file instead",
                name,
                plugin,
            )
    return found


# -- plans ---------------------------------------------------------------------------------
class _PlanPickler(pickle.Pickler):
    """Node types go by name (they hold functions; the worker has them from its registry)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, NodeType):
            return _node_type, (obj.type,)
        return NotImplemented


_registry_lock = threading.Lock()
_registry: Registry | None = None


def _node_type(name: str) -> NodeType:
    node_type = _registry.get(name) if _registry is not None else None
    if node_type is None:
        raise KeyError(f"node type {name!r} is not loaded in the worker process")
    return node_type


def plan_to_data(plan: Plan) -> bytes:
    """A validated plan as bytes for the worker: pickled once, on the submitting thread."""
    buffer = io.BytesIO()
    _PlanPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(plan)
    return buffer.getvalue()


def plan_from_data(data: bytes, registry: Registry) -> Plan:
    """The plan again, its node types from `registry`; KeyError names a missing one."""
    global _registry
    with _registry_lock:
        _registry = registry
        try:
            plan: Plan = pickle.loads(data)
        finally:
            _registry = None
    return plan
