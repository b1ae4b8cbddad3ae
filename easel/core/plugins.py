"""Loading plugins (built-in, entry points, local files) into a registry of node types.

One broken plugin is reported by name and skipped; it never takes the host down.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from easel.core import hookspecs
from easel.core.node import NodeType
from easel.core.types import ANY, BUILTIN_SOCKET_TYPES

hookimpl = pluggy.HookimplMarker("easel")

ENTRY_POINT_GROUP = "easel"
BUILTIN_PLUGIN = "easel"


@dataclass
class PluginInfo:
    """What `easel plugins` shows for one plugin."""

    name: str
    version: str
    source: str
    nodes: list[str] = field(default_factory=list)
    socket_types: list[str] = field(default_factory=list)
    web_assets: Path | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Registry:
    """The node types, socket types and editor assets of the loaded plugins."""

    nodes: dict[str, NodeType] = field(default_factory=dict)
    socket_types: dict[str, str] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    collisions: dict[str, list[str]] = field(default_factory=dict)

    def get(self, type_name: str) -> NodeType | None:
        return self.nodes.get(type_name)

    def suggest(self, type_name: str) -> str | None:
        close = difflib.get_close_matches(type_name, list(self.nodes), n=1, cutoff=0.5)
        if close:
            return close[0]
        lowered = {name.lower(): name for name in self.nodes}
        return lowered.get(type_name.lower())

    @property
    def errors(self) -> list[str]:
        return [f"plugin {info.name!r}: {err}"
                for info in self.plugins.values() for err in info.errors]

    def schemas(self) -> dict[str, dict[str, Any]]:
        return {name: node_type.schema() for name, node_type in sorted(self.nodes.items())}

    def add_node(self, plugin: str, node_type: NodeType) -> None:
        """Register one node type directly (tests, embedding); same rules as the hook."""
        _Loader(self).add_nodes(plugin, [node_type])


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]


class _Loader:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        if not registry.socket_types:
            registry.socket_types.update({name: "built-in" for name in BUILTIN_SOCKET_TYPES})

    def info(self, name: str, version: str = "", source: str = "") -> PluginInfo:
        if name not in self.registry.plugins:
            self.registry.plugins[name] = PluginInfo(name, version, source)
        return self.registry.plugins[name]

    def add_nodes(self, plugin: str, node_types: Iterable[Any]) -> None:
        info = self.info(plugin)
        for node_type in node_types:
            if not isinstance(node_type, NodeType):
                info.errors.append(
                    f"register_nodes got {node_type!r}, expected a node made with @easel.node"
                )
                continue
            unknown = sorted(
                {t for t in [*(s.type for s in node_type.inputs.values()),
                             *node_type.outputs.values()]
                 if t != ANY and t not in self.registry.socket_types}
            )
            if unknown:
                info.errors.append(
                    f"node {node_type.type!r} uses unknown socket types {unknown}: "
                    "register them with the register_socket_types hook"
                )
                continue
            name = node_type.type
            existing = self.registry.nodes.get(name)
            if name in self.registry.collisions:
                self.registry.collisions[name].append(plugin)
                info.errors.append(_collision_message(name, self.registry.collisions[name]))
                continue
            if existing is not None:
                owners = [existing.plugin, plugin]
                self.registry.collisions[name] = owners
                del self.registry.nodes[name]
                self.registry.plugins[existing.plugin].nodes.remove(name)
                message = _collision_message(name, owners)
                info.errors.append(message)
                self.registry.plugins[existing.plugin].errors.append(message)
                continue
            node_type.plugin = plugin
            self.registry.nodes[name] = node_type
            info.nodes.append(name)

    def call_hooks(self, pm: pluggy.PluginManager) -> None:
        # Socket types first, so any plugin's nodes may use any plugin's types.
        for hook_name in ("register_socket_types", "register_nodes", "register_web_assets"):
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
                info = self.info(plugin)
                collected: list[Any] = []

                def register(*args: Any, _collected: list[Any] = collected) -> None:
                    _collected.append(args)

                try:
                    impl.function(register=register)
                except Exception as exc:  # a plugin's bug must not take the host down
                    info.errors.append(f"{hook_name} failed: {type(exc).__name__}: {exc}")
                    info.errors.append(traceback.format_exc(limit=-3).rstrip())
                    continue
                try:
                    self._apply(hook_name, plugin, info, collected)
                except TypeError as exc:
                    info.errors.append(f"{hook_name}: bad register() call: {exc}")

    def _apply(self, hook_name: str, plugin: str, info: PluginInfo, collected: list[Any]) -> None:
        if hook_name == "register_nodes":
            for args in collected:
                if len(args) != 1:
                    raise TypeError("register(node_type) takes one argument")
            self.add_nodes(plugin, [args[0] for args in collected])
        elif hook_name == "register_socket_types":
            for name, *rest in collected:
                description = rest[0] if rest else ""
                if not isinstance(name, str) or name.upper() != name:
                    info.errors.append(f"socket type names are UPPER_SNAKE_CASE, got {name!r}")
                    continue
                self.registry.socket_types.setdefault(name, description or plugin)
                info.socket_types.append(name)
        else:
            for args in collected:
                folder = Path(args[0])
                if not folder.is_dir():
                    info.errors.append(f"web asset folder {folder} does not exist")
                    continue
                info.web_assets = folder


def _collision_message(name: str, owners: list[str]) -> str:
    names = " and ".join(repr(owner) for owner in owners)
    return (
        f"node type {name!r} is defined by both plugins {names}; neither is used. "
        "Uninstall or disable one (EASEL_DISABLE_PLUGINS)."
    )


def _identity(obj: object) -> object:
    return obj


def _load_file(path: str) -> ModuleType:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no such plugin file: {file}")
    module_name = f"easel_local_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_plugins(
    plugin_files: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    entry_points: bool = True,
    builtins: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> Registry:
    """Load the built-in nodes, installed plugins and local plugin files into a registry.

    Environment: EASEL_PLUGINS (extra files or modules, comma or os.pathsep separated),
    EASEL_DISABLE_PLUGINS (names, or "all" for every third-party plugin),
    EASEL_ALLOW_PLUGINS (only these third-party plugins).
    """
    env = os.environ if environ is None else environ
    disabled = set(_split(env.get("EASEL_DISABLE_PLUGINS")))
    allowed = set(_split(env.get("EASEL_ALLOW_PLUGINS")))

    def wanted(name: str) -> bool:
        if name in disabled or {"all", "*", "1"} & disabled:
            return False
        return not allowed or name in allowed

    registry = Registry()
    loader = _Loader(registry)
    pm = pluggy.PluginManager("easel")
    pm.add_hookspecs(hookspecs)

    def add(name: str, version: str, source: str, load: Callable[[], object]) -> None:
        info = loader.info(name, version, source)
        try:
            pm.register(load(), name=name)
        except Exception as exc:  # report and go on
            info.errors.append(f"failed to load: {type(exc).__name__}: {exc}")

    if builtins:
        from easel import __version__

        add(BUILTIN_PLUGIN, __version__, "built-in",
            lambda: importlib.import_module("easel.nodes.plugin"))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not wanted(ep.name):
                continue
            version = ep.dist.version if ep.dist is not None else "?"
            add(ep.name, version, f"entry point {ep.value}", ep.load)
    local = [*plugin_files, *(p for part in _split(env.get("EASEL_PLUGINS"))
                              for p in part.split(os.pathsep) if p)]
    for item in local:
        looks_like_file = item.endswith(".py") or os.sep in item
        name = Path(item).stem if looks_like_file else item
        if not wanted(name):
            continue
        if looks_like_file:
            add(name, "local", item, functools.partial(_load_file, item))
        else:
            add(name, "local", f"module {item}",
                functools.partial(importlib.import_module, item))
    for name, obj in extra:
        add(name, "local", "registered in process", functools.partial(_identity, obj))
    for name, info in registry.plugins.items():
        if not info.version:
            module = pm.get_plugin(name)
            info.version = str(getattr(module, "__version__", "local"))
    loader.call_hooks(pm)
    return registry
